"""Stage compare: the reference's comparison table for the three models, plus cost figures.

Writes metrics/compare.json, metrics/compare.md and plots/compare/models.png.
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bloodcells.atomic import save_figure, write_json, write_text
from bloodcells.errors import UserError, stage_main
from bloodcells.params import load_params

# The reference project's table (ImageNet-pretrained, GPU, 35 test images), for the side-by-side view.
REFERENCE = {
    "efficientnet": {"arch": "efficientnet-b1", "accuracy": 0.914, "avg_sensitivity": 0.86, "avg_specificity": 0.97},
    "resnet": {"arch": "resnet34", "accuracy": 0.800, "avg_sensitivity": 0.92, "avg_specificity": 0.94},
    "alexnet": {"arch": "alexnet", "accuracy": 0.171, "avg_sensitivity": 0.25, "avg_specificity": 0.75},
}
SCORES = ("accuracy", "avg_sensitivity", "avg_specificity")


def read_json(path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; run the stages before compare (dvc repro)")
    return json.loads(path.read_text())


def model_row(name, timing):
    evaluation = read_json(f"metrics/evaluate/{name}.json")
    training = read_json(f"metrics/train/{name}/metrics.json")
    return {
        "accuracy": evaluation["accuracy"],
        "accuracy_ci95": evaluation["accuracy_ci95"],
        "avg_sensitivity": evaluation["macro_sensitivity"],
        "avg_specificity": evaluation["macro_specificity"],
        "macro_f1": evaluation["macro_f1"],
        "parameters": training["parameters"],
        "train_seconds": training["train_seconds"],
        "inference_ms_per_image": timing[name]["inference_ms_per_image"],
    }


def best_model(rows):
    """Highest accuracy; ties go to the higher sensitivity, then to the smaller model."""
    return max(rows, key=lambda n: (rows[n]["accuracy"], rows[n]["avg_sensitivity"], -rows[n]["parameters"]))


def markdown_table(rows, archs, best):
    lines = [
        "| model | accuracy (95% CI) | avg sensitivity | avg specificity | parameters | train s | ms/image "
        "| reference accuracy / sens. / spec. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        ref = REFERENCE.get(name)
        reference = f"{ref['arch']}: {ref['accuracy']:.3f} / {ref['avg_sensitivity']:.2f} / " \
                    f"{ref['avg_specificity']:.2f}" if ref else ""
        low, high = row["accuracy_ci95"]
        marker = " **best**" if name == best else ""
        lines.append(f"| {name} ({archs[name]}){marker} | {row['accuracy']:.3f} ({low:.2f}-{high:.2f}) | "
                     f"{row['avg_sensitivity']:.3f} | {row['avg_specificity']:.3f} | {row['parameters'] / 1e6:.1f}M | "
                     f"{row['train_seconds']:.0f} | {row['inference_ms_per_image']:.1f} | {reference} |")
    return "\n".join(lines) + "\n"


def plot_models(rows):
    names = list(rows)
    x = np.arange(len(SCORES))
    width = 0.8 / len(names)
    figure, axes = plt.subplots(figsize=(8, 4))
    for i, name in enumerate(names):
        values = [rows[name][score] for score in SCORES]
        bars = axes.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=name)
        axes.bar_label(bars, fmt="%.2f", fontsize=8)
    axes.set_xticks(x, [s.replace("_", " ") for s in SCORES])
    axes.set_ylim(0, 1.18)
    axes.set_title("Test-split scores per model")
    axes.legend(loc="upper center", ncol=len(names))
    save_figure(figure, Path("plots/compare/models.png"))
    plt.close(figure)


@stage_main
def main():
    params = load_params()
    timing = read_json("metrics/evaluate/timing.json")
    rows = {name: model_row(name, timing) for name in params["models"]}
    best = best_model(rows)
    archs = {name: params["models"][name]["arch"] for name in rows}
    write_json("metrics/compare.json", {"models": rows, "best_model": best})
    write_text("metrics/compare.md", markdown_table(rows, archs, best))
    plot_models(rows)
    print(markdown_table(rows, archs, best))


if __name__ == "__main__":
    main()
