"""How far the recipes of some sweep records could go on the same images: per model, the images none got right.

Usage: python benchmarks/ceiling.py RECORD RECORD [...] [--suspects label_issues/defaults.csv]

Reads each record's kept predictions (records/<record>_predictions.csv, written by src/sweep.py; the records
must test the same images) and prints, per model and for all models together: the images tested, those no run of
any record got right, and the accuracy of an oracle that takes, image by image, whichever record was right: the
most any of these recipes could reach on these images. With --suspects (src/audit.py's list), how many of the
never-right images the label audit suspects.
"""
import argparse
from pathlib import Path

import pandas as pd

from bloodcells.core.errors import UserError, stage_main
from bloodcells.experiments.records import record_paths

ALL_MODELS = "all models"


def read_records(records):
    frames = []
    for record in records:
        kept = record_paths(record)[2]
        if not kept.exists():
            raise UserError(f"{kept} not found: record {record} kept no predictions here (src/sweep.py writes them)")
        frames.append(pd.read_csv(kept).assign(record=record))
    predictions = pd.concat(frames, ignore_index=True)
    images = predictions.groupby(["model", "record"])["image"].apply(frozenset)
    for model, per_record in images.groupby(level="model"):
        if per_record.nunique() > 1:
            raise UserError(f"{model}: records {', '.join(records)} were not tested on the same images; "
                            "give records of the same folds")
    return predictions


def ceiling(predictions, suspects=()):
    """Rows (model, images, never right, oracle accuracy, suspects among the never right); the last for all models."""
    predictions = predictions.assign(right=predictions["actual"] == predictions["predicted"])
    rows = []
    for model, part in [*predictions.groupby("model", sort=False), (ALL_MODELS, predictions)]:
        ever_right = part.groupby("image")["right"].any()
        never = set(ever_right.index[~ever_right])
        rows.append({"model": model, "images": len(ever_right), "never_right": len(never),
                     "oracle_accuracy": float(ever_right.mean()), "suspected": len(never & set(suspects))})
    return rows


@stage_main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", metavar="RECORD")
    parser.add_argument("--suspects", type=Path, help="the label audit's list (label_issues/<record>.csv)")
    args = parser.parse_args()
    suspects = set(pd.read_csv(args.suspects)["image"]) if args.suspects else set()
    rows = ceiling(read_records(args.records), suspects)
    print(f"Records {', '.join(args.records)}: images no run got right, and the best any of them reaches\n")
    print("| model | images | never right | oracle accuracy |" + (" of them suspected by the audit |" if suspects else ""))
    print("|---|---|---|---|" + ("---|" if suspects else ""))
    for row in rows:
        print(f"| {row['model']} | {row['images']} | {row['never_right']} | {row['oracle_accuracy']:.3f} |"
              + (f" {row['suspected']} |" if suspects else ""))


if __name__ == "__main__":
    main()
