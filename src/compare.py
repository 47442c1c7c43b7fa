"""Stage compare: the reference's comparison table for the three models, paired tests between them,
plus cost figures.

Writes metrics/compare.json (scores and paired tests only: figures that vary from run to run, such as
seconds, stay in compare.md, so `dvc metrics diff` shows no row for an unchanged model),
metrics/compare.md and plots/compare/models.png.
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bloodcells.training import machine
from bloodcells.core.atomic import save_figure, write_json, write_text
from bloodcells.data.cleaning import BCCD_CLASSES
from bloodcells.core.errors import UserError, stage_main
from bloodcells.config.params import load_params
from bloodcells.evaluation.model_choice import best_model
from bloodcells.evaluation.stats import describe_pair, paired_comparisons

# The reference project's table (ImageNet-pretrained, GPU, 35 test images), for the side-by-side view.
REFERENCE = {
    "efficientnet": {"arch": "efficientnet-b1", "accuracy": 0.914, "macro_sensitivity": 0.86, "macro_specificity": 0.97},
    "resnet": {"arch": "resnet34", "accuracy": 0.800, "macro_sensitivity": 0.92, "macro_specificity": 0.94},
    "alexnet": {"arch": "alexnet", "accuracy": 0.171, "macro_sensitivity": 0.25, "macro_specificity": 0.75},
}
SCORES = ("accuracy", "macro_sensitivity", "macro_specificity")


def read_json(path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; run the stages before compare (dvc repro)")
    return json.loads(path.read_text())


def model_row(name):
    evaluation = read_json(f"metrics/evaluate/{name}.json")
    training = read_json(f"metrics/train/{name}/metrics.json")
    return {
        "accuracy": evaluation["accuracy"],
        "accuracy_ci95": evaluation["accuracy_ci95"],
        "macro_sensitivity": evaluation["macro_sensitivity"],
        "macro_specificity": evaluation["macro_specificity"],
        "macro_f1": evaluation["macro_f1"],
        "balanced_accuracy": evaluation["balanced_accuracy"],
        "cohen_kappa": evaluation["cohen_kappa"],
        "macro_roc_auc": evaluation["macro_roc_auc"],
        "expected_calibration_error": evaluation["expected_calibration_error"],
        "parameters": training["parameters"],
    }


def cost_row(name, timing):
    """Wall-clock figures: they differ between two runs of the same inputs, so they are not metrics."""
    return {"train_seconds": read_json(f"metrics/train/{name}/metrics.json")["train_seconds"],
            "inference_ms_per_image": timing[name]["inference_ms_per_image"]}


def machine_records(names):
    """Which machine trained each model, and in which precision (metrics/train/<model>/machine.json; None where a
    model was trained before the record was kept)."""
    records = {}
    for name in names:
        path = Path(f"metrics/train/{name}/machine.json")
        records[name] = json.loads(path.read_text()) if path.is_file() else None
    return records


def read_predictions(name):
    path = Path(f"metrics/evaluate/predictions/{name}.csv")
    if not path.is_file():
        raise UserError(f"{path} not found; run the evaluate stage first (dvc repro evaluate)")
    return pd.read_csv(path).set_index("image").sort_index()


def pairwise(names):
    """McNemar's exact test and the accuracy difference for every pair of models, on the shared test images."""
    frames = {name: read_predictions(name) for name in names}
    first = frames[names[0]]
    for name, frame in frames.items():
        if not frame.index.equals(first.index):
            raise UserError(f"metrics/evaluate/predictions/{name}.csv and {names[0]}.csv hold different test "
                            "images; re-run evaluate (dvc repro evaluate)")
    correct = {name: (frame["actual"] == frame["predicted"]).to_numpy() for name, frame in frames.items()}
    return paired_comparisons(correct, first.index, ["test split"] * len(first))


def markdown_table(rows, costs, archs, best, pairs, made_on=(), with_reference=True):
    """The comparison table; `with_reference` adds the reference project's scores (BCCD's four classes only)."""
    lines = [
        "| model | accuracy (95% CI) | macro sensitivity | macro specificity | kappa | macro AUC | ECE | parameters "
        "| train s | ms/image |" + (" reference accuracy / sens. / spec. |" if with_reference else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if with_reference else ""),
    ]
    for name, row in rows.items():
        ref = REFERENCE.get(name)
        reference = f"{ref['arch']}: {ref['accuracy']:.3f} / {ref['macro_sensitivity']:.2f} / " \
                    f"{ref['macro_specificity']:.2f}" if ref else ""
        reference = f" {reference} |" if with_reference else ""
        low, high = row["accuracy_ci95"]
        marker = " **best**" if name == best else ""
        auc = "n/a" if row["macro_roc_auc"] is None else f"{row['macro_roc_auc']:.3f}"
        lines.append(f"| {name} ({archs[name]}){marker} | {row['accuracy']:.3f} ({low:.2f}-{high:.2f}) | "
                     f"{row['macro_sensitivity']:.3f} | {row['macro_specificity']:.3f} | {row['cohen_kappa']:.3f} | "
                     f"{auc} | {row['expected_calibration_error']:.3f} | {row['parameters'] / 1e6:.1f}M | "
                     f"{costs[name]['train_seconds']:.0f} | {costs[name]['inference_ms_per_image']:.1f} |{reference}")
    lines += ["", "Paired on the same test images (McNemar's exact test, Holm-adjusted over the pairs):", ""]
    lines += [f"- {describe_pair(pair)}" for pair in pairs]
    if made_on:
        lines += ["", *made_on]
    return "\n".join(lines) + "\n"


def per_class_lines(evaluations):
    """Per-class sensitivity of every model, and the pairs of classes each model most often takes for each other."""
    names = list(evaluations)
    classes = list(evaluations[names[0]]["per_class"])
    lines = ["", "Sensitivity per class (test split; images of the class in brackets):", "",
             "| model | " + " | ".join(f"{c} ({evaluations[names[0]]['per_class'][c]['support']})" for c in classes)
             + " |", "|---|" + "---|" * len(classes)]
    for name, evaluation in evaluations.items():
        lines.append(f"| {name} | " + " | ".join(f"{evaluation['per_class'][c]['sensitivity']:.3f}" for c in classes)
                     + " |")
    lines += ["", "Hardest pairs (test images of either class called the other; plots/evaluate/<model>_pairs.png "
                  "shows them):", ""]
    for name, evaluation in evaluations.items():
        pairs = evaluation.get("hardest_pairs", [])
        described = "; ".join(f"{p['pair'][0]} / {p['pair'][1]} {p['errors']} ({p['a_called_b']} and "
                              f"{p['b_called_a']})" for p in pairs)
        lines.append(f"- {name}: {described or 'no errors'}")
    return lines


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


MACHINES_FILE = Path("metrics/machines.json")


@stage_main
def main():
    config = load_params(("models",))
    timing = read_json("metrics/evaluate/timing.json")
    names = list(config.models)
    rows = {name: model_row(name) for name in names}
    costs = {name: cost_row(name, timing) for name in names}
    best = best_model(rows)
    pairs = pairwise(names)
    archs = {name: config.models[name].arch for name in rows}
    write_json("metrics/compare.json", {"models": rows, "best_model": best, "pairs": {
        f"{p['a']}_vs_{p['b']}": {"difference": p["difference"], "difference_ci95": p["difference_ci95"],
                                  **{k: v for k, v in p["mcnemar"][0].items() if k != "replicate"}}
        for p in pairs}})
    classes = set(read_json(f"metrics/evaluate/{names[0]}.json")["per_class"])
    machines = machine_records(names)
    write_json(MACHINES_FILE, machines)  # in git, unlike machine.json: what the sweep reads of each run
    table = markdown_table(rows, costs, archs, best, pairs, machine.trained_on_lines(machines),
                           with_reference=classes == set(BCCD_CLASSES))  # the reference scored BCCD's 4 classes
    table += "\n".join(per_class_lines({name: read_json(f"metrics/evaluate/{name}.json") for name in names})) + "\n"
    write_text("metrics/compare.md", table)
    plot_models(rows)
    print(table)


if __name__ == "__main__":
    main()
