"""The accuracy-time frontier: each family trained by recipes from quick to long, its held-out accuracy against
CPU minutes, so a user picks a recipe by the time they have.

Usage: python benchmarks/frontier.py --record pbc -S dataset=pbc -S data.source=PATH --recipe quick=48x6 \
           --recipe default=64x12 [--recipe long=64x24 ...] [--models efficientnet]
       python benchmarks/frontier.py --record pbc --report-only

A recipe NAME=SIZExEPOCHS sets the image_size and epochs of every model, or of those given with --models
(`-S models.<model>.image_size=SIZE -S models.<model>.epochs=EPOCHS`), on top of the -S settings, and runs the
whole pipeline once in this workspace as `dvc exp run -n frontier-<record>-<NAME>` (what the recipe leaves
unchanged, fetch and clean after the first recipe among them, comes from the run-cache).
Each recipe's rows are added to records/frontier_<record>.json as soon as it ends, so a stopped run keeps what
finished; the table goes to records/frontier_<record>.md and the plot to docs/images/frontier_<record>.png.
Test accuracy is the evaluate stage's, on the test split that no recipe here was chosen on; the validation
accuracy is the one to choose a recipe by. Minutes are the training loop's (train_seconds) and the whole run's.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bloodcells.training import machine
from bloodcells.core.atomic import save_figure, write_json, write_text
from bloodcells.core.errors import UserError
from bloodcells.models.factory import MIN_IMAGE_SIZE

MODELS = ("resnet", "efficientnet", "alexnet")


def parse_recipe(text):
    name, _, spec = text.partition("=")
    try:
        size, epochs = (int(part) for part in spec.lower().split("x"))
    except ValueError:
        raise UserError(f"--recipe {text!r}: write NAME=SIZExEPOCHS, e.g. quick=48x6") from None
    return name, size, epochs


def recipe_settings(size, epochs, models):
    return [f"models.{m}.{key}={value}" for m in models for key, value in (("image_size", size), ("epochs", epochs))]


def read_json(path):
    return json.loads(Path(path).read_text())


def shown_settings(settings):
    """The -S settings a row keeps: all but the data's path (machine-specific)."""
    return [s for s in settings if not s.split("=")[0].endswith("source")]


def run_recipe(record, name, size, epochs, settings, models):
    """Run the pipeline with one recipe; its rows, one per model it sets, from the files the stages wrote."""
    arguments = [f"-S{s}" for s in settings + recipe_settings(size, epochs, models)]
    started = time.perf_counter()
    subprocess.run(["dvc", "exp", "run", "-n", f"frontier-{record}-{name}", *arguments], check=True)
    minutes = (time.perf_counter() - started) / 60
    rows = []
    for model in models:
        training = read_json(f"metrics/train/{model}/metrics.json")
        evaluation = read_json(f"metrics/evaluate/{model}.json")
        made_on = read_json(f"metrics/train/{model}/machine.json")
        rows.append({"recipe": name, "image_size": size, "epochs": epochs, "model": model,
                     "settings": shown_settings(settings),
                     "train_minutes": round(training["train_seconds"] / 60, 2), "run_minutes": round(minutes, 1),
                     "seconds_per_epoch": training["seconds_per_epoch"],
                     "images_per_second": training["images_per_second"],
                     "data_wait_share": training["data_wait_share"],
                     "val_accuracy": training["selected_val_accuracy"],
                     "test_accuracy": evaluation["accuracy"], "test_ci95": evaluation["accuracy_ci95"],
                     "test_images": evaluation["n_total"],
                     "macro_sensitivity": evaluation["macro_sensitivity"],
                     "machine": machine.summary_line(made_on)})
    return rows


def recipe_label(row, common):
    """The recipe's name, with the -S settings that not every row of the record shares (e.g. a lower ema)."""
    own = [s for s in row["settings"] if s not in common]
    return f"{row['recipe']} ({', '.join(own)})" if own else row["recipe"]


def table(rows):
    common = set.intersection(*(set(r["settings"]) for r in rows))
    lines = ["| model | recipe | px x epochs | training min | whole run min | s/epoch | img/s | data wait | "
             "val accuracy | test accuracy (95 % CI) | macro sensitivity |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (MODELS.index(r["model"]), r["train_minutes"])):
        low, high = row["test_ci95"]
        lines.append(f"| {row['model']} | {recipe_label(row, common)} | {row['image_size']} x {row['epochs']} | "
                     f"{row['train_minutes']:.1f} | {row['run_minutes']:.0f} | {row['seconds_per_epoch']:.1f} | "
                     f"{row['images_per_second']:.0f} | {100 * row['data_wait_share']:.1f} % | "
                     f"{row['val_accuracy']:.3f} | {row['test_accuracy']:.3f} ({low:.3f}-{high:.3f}) | "
                     f"{row['macro_sensitivity']:.3f} |")
    return "\n".join(lines)


FLOOR = 0.8  # the plot's lowest accuracy: a recipe below it is drawn on the floor with its value


def plot(rows, record, path, reference=0.96):
    figure, axes = plt.subplots(figsize=(7, 4.4))
    for model in MODELS:
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["train_minutes"])
        if not mine:
            continue
        x = [r["train_minutes"] for r in mine]
        y = [max(r["test_accuracy"], FLOOR) for r in mine]
        errors = [[height - max(r["test_ci95"][0], FLOOR) for r, height in zip(mine, y)],
                  [max(r["test_ci95"][1], FLOOR) - height for r, height in zip(mine, y)]]
        line = axes.errorbar(x, y, yerr=errors, marker="o", capsize=3, label=model)
        for r, height in zip(mine, y):
            below = r["test_accuracy"] < FLOOR
            label = f"{r['image_size']}x{r['epochs']}" + (f": {r['test_accuracy']:.3f}" if below else "")
            axes.annotate(label, (r["train_minutes"], height), textcoords="offset points", fontsize=7,
                          xytext=(3, 5 if below else -11), color=line[0].get_color())
    axes.axhline(reference, color="grey", linestyle="--", linewidth=0.8)
    axes.text(0.01, reference + 0.002, f"{reference}: published (pretrained VGG-16, another split)", fontsize=7,
              color="grey", transform=axes.get_yaxis_transform())
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([1, 2, 3, 5, 10, 20, 30, 60, 120]))
    axes.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # log-scale minor labels overlap the major ones
    axes.set_ylim(FLOOR - 0.01, 1.0)
    axes.set_xlabel("training minutes, log scale (2-core CPU: see the table for which)")
    axes.set_ylabel(f"test accuracy ({rows[0]['test_images']} images, 95 % CI)")
    axes.set_title(f"Accuracy against training time: {record} (label: px x epochs)", fontsize=10)
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="lower right")
    save_figure(figure, path)
    plt.close(figure)


def report(record, rows):
    machines = sorted({r["machine"] for r in rows})
    text = (f"# Accuracy-time frontier: {record}\n\nMade by `python benchmarks/frontier.py --record {record}`; "
            f"trained on {'; '.join(machines)}.\n\n{table(rows)}\n")
    write_text(Path(f"records/frontier_{record}.md"), text)
    plot(rows, record, Path(f"docs/images/frontier_{record}.png"))
    print(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", required=True, help="records/frontier_<record>.json/.md")
    parser.add_argument("--recipe", action="append", default=[], metavar="NAME=SIZExEPOCHS")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="the models a recipe sets (the others keep their recipe and their cached training)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    path = Path(f"records/frontier_{args.record}.json")
    rows = read_json(path)["rows"] if path.is_file() else []
    recipes = [parse_recipe(text) for text in args.recipe]
    for name, size, _ in recipes:  # before any run: train_<model> would refuse it only after the others trained
        too_small = [m for m in args.models if size < MIN_IMAGE_SIZE[m]]
        if too_small:
            raise UserError(f"--recipe {name}: {size} px is below the smallest side of {', '.join(too_small)} "
                            f"({', '.join(str(MIN_IMAGE_SIZE[m]) for m in too_small)}); leave it out with --models")
    if not args.report_only:
        for recipe in recipes:
            rows = [r for r in rows if (r["recipe"], r["model"]) not in {(recipe[0], m) for m in args.models}] \
                + run_recipe(args.record, *recipe, args.set_param, args.models)
            write_json(path, {"rows": rows})
    if not rows:
        raise UserError(f"{path} has no rows; run recipes first (--recipe NAME=SIZExEPOCHS)")
    report(args.record, rows)


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        sys.exit(f"error: {error}")
