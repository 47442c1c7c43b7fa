"""predict (stain locator, annotations ignored) against evaluate, on the photographs of the current test split.

Usage, after `dvc repro`: python benchmarks/predict_on_test_split.py [--models resnet efficientnet alexnet]
Prints, per model, the accuracy of predict on the raw test photographs next to evaluate's accuracy on the
clean stage's crops of the same photographs, and how many boxes the locator placed with IoU >= 0.5 against the
box evaluate's crops came from.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bloodcells.data.locator import iou


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet", "efficientnet", "alexnet"])
    args = parser.parse_args()
    test = pd.read_csv("data/clean/test.csv")
    photos = [f"data/raw/JPEGImages/{name}.jpg" for name in test["image"]]
    print(f"test split: {len(test)} photographs ({', '.join(f'{k} {v}' for k, v in test['label'].value_counts().items())})")
    print("| model | evaluate (crops from the VOC boxes) | predict (stain locator) | both right | located boxes IoU >= 0.5 |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            out = Path(tmp) / f"{name}.json"
            subprocess.run([sys.executable, "src/predict.py", *photos, "--model", f"models/{name}.pt", "--out",
                            str(out)], check=False, stdout=subprocess.DEVNULL)
            predicted = pd.DataFrame(json.loads(out.read_text()))
            predicted["image"] = predicted["file"].map(lambda f: Path(f).stem)
            merged = test.merge(predicted, on="image", suffixes=("_voc", ""))
            evaluated = pd.read_csv(f"metrics/evaluate/predictions/{name}.csv")
            merged = merged.merge(evaluated[["image", "predicted"]], on="image", suffixes=("", "_evaluate"))
            right = merged["predicted"] == merged["label"]
            right_evaluate = merged["predicted_evaluate"] == merged["label"]
            corners = ["xmin", "ymin", "xmax", "ymax"]
            located = sum(iou(tuple(row[corners]), tuple(row[[f"{c}_voc" for c in corners]])) >= 0.5
                          for _, row in merged.iterrows() if not row["error"])
            print(f"| {name} | {right_evaluate.mean():.3f} ({right_evaluate.sum()}/{len(merged)}) | "
                  f"{right.mean():.3f} ({right.sum()}/{len(merged)}) | {(right & right_evaluate).sum()} | "
                  f"{located}/{len(merged)} |")


if __name__ == "__main__":
    main()
