"""Label audit: the images whose label is probably wrong, from a sweep record's out-of-fold predictions (cleanlab).

Usage: python src/audit.py [--record defaults] [--top 24]
       python src/audit.py --test-split     # the workspace's test split only (evaluate's predictions; record test_split)

Reads records/<record>_predictions.csv (every image's test predictions by every model of
`python src/sweep.py`), retrains nothing, and writes label_issues/<record>.csv (suspects ranked, most
suspect first: image, given and suggested label, cleanlab's label quality, the models that agree with the
suggestion; `-S clean.leave_out_of_training=<record>` leaves them out of training), records/label_issues_<record>.json (counts, cleanlab's per-class label-noise estimate, how many
of the images every model missed are suspects) and plots/audit/label_issues_<record>.png (the crops of the top
suspects, from data/clean/images/, with given and suggested label).
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from bloodcells.core.atomic import atomic_file, save_figure, write_json
from bloodcells.core.errors import UserError, stage_main
from bloodcells.evaluation.label_audit import audit
from bloodcells.experiments.records import record_paths

CROPS = Path("data/clean/images")


def read_record(record):
    _, _, predictions_path = record_paths(record)
    if not predictions_path.is_file():
        raise UserError(f"{predictions_path} not found: run the sweep first (python src/sweep.py run --folds 5"
                        f"{'' if record == 'defaults' else ' --record ' + record}), which keeps every prediction")
    predictions = pd.read_csv(predictions_path)
    classes = [column.removeprefix("p_") for column in predictions.columns if column.startswith("p_")]
    return predictions, classes


def read_test_split():
    """evaluate's predictions of every model on the workspace's test split, as a record's predictions."""
    frames = []
    for path in sorted(Path("metrics/evaluate/predictions").glob("*.csv")):
        if not path.stem.endswith("_roc"):
            frames.append(pd.read_csv(path).assign(model=path.stem))
    if not frames:
        raise UserError("metrics/evaluate/predictions/ has no predictions: run the pipeline first (dvc repro)")
    predictions = pd.concat(frames, ignore_index=True)
    classes = [column.removeprefix("p_") for column in predictions.columns if column.startswith("p_")]
    return predictions, classes


def plot_suspects(table, path, top):
    shown = [row for row in table.head(top).itertuples() if (CROPS / f"{row.image}.png").is_file()]
    columns = max(1, min(6, len(shown)))
    rows = max(1, -(-len(shown) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.5 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row in zip(axes.ravel(), shown):
        ax.imshow(np.asarray(Image.open(CROPS / f"{row.image}.png").convert("RGB")))
        ax.set_title(f"#{row.rank} {row.image.removeprefix('BloodImage_')}\ngiven {row.given[:4]}, "
                     f"likely {row.suggested[:4]} {row.p_suggested:.2f}", fontsize=8)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no suspects\n(or no crops in data/clean)", ha="center", va="center")
    figure.suptitle(f"Suspected label errors: top {len(shown)} of {len(table)}", fontsize=10)
    save_figure(figure, path)
    plt.close(figure)
    return len(shown)


@stage_main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", default="defaults", help="the sweep record to audit (records/<record>.*)")
    parser.add_argument("--test-split", action="store_true",
                        help="audit the workspace's test split (metrics/evaluate/predictions/) as record test_split")
    parser.add_argument("--top", type=int, default=24, help="suspects in the picture")
    args = parser.parse_args()
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    if args.test_split:
        args.record = "test_split"
        predictions, classes = read_test_split()
    else:
        predictions, classes = read_record(args.record)
    table, noise, images, missed = audit(predictions, classes)
    suspected = set(table["image"])
    with atomic_file(Path(f"label_issues/{args.record}.csv")) as tmp:
        table.to_csv(tmp, index=False)
    result = {
        "record": args.record,
        "images": images,
        "suspects": len(table),
        "suspects_by_given_label": {name: int((table["given"] == name).sum()) for name in classes},
        "estimated_label_noise": noise,
        "missed_by_every_model": {"images": len(missed), "suspects": len(missed & suspected)},
    }
    write_json(Path(f"records/label_issues_{args.record}.json"), result)
    picture = Path(f"plots/audit/label_issues_{args.record}.png")
    drawn = plot_suspects(table, picture, args.top)
    print(f"{len(table)} of {images} images suspected of a wrong label ({len(missed & suspected)} of the "
          f"{len(missed)} every model missed); estimated label noise: "
          + ", ".join(f"{name} {share:.1%}" for name, share in noise.items())
          + f" -> label_issues/{args.record}.csv, {picture}"
          + ("" if drawn or table.empty else " (no crops drawn: run dvc repro clean for data/clean/images)"))


if __name__ == "__main__":
    main()
