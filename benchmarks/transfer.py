"""Trained checkpoints scored on another laboratory's labelled images, each way of cutting and standardising them.

Usage: python benchmarks/transfer.py --set PATH [--rename their=OURS ...] CHECKPOINT [CHECKPOINT ...]
e.g.   python benchmarks/transfer.py --set <pbc copy> models/*.pt                  # BCCD's models on PBC
       python benchmarks/transfer.py --set <bccd copy> weights/*/pretrain.pt       # PBC-trained models on BCCD

The set is read as the external@<name> stage reads it (bloodcells.external: its layout, its cleaning rules,
classes matched by name in any letter case or by --rename). Each checkpoint is scored with the set cut as its
layout is cut and as a stain-located crop (crop: wbc, locator: stain), each standardised by the model's training
statistics and by the set's own (external.sets.<name>.statistics: own), with test-time augmentation as evaluate
does. Prints accuracy and macro sensitivity on the images of the model's classes, and the 95 % interval.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from bloodcells import external  # noqa: E402
from bloodcells.inference import load_checkpoint, model_inputs, predict_probabilities  # noqa: E402

CUTS = {"its layout's": {}, "stain-located": {"crop": "wbc", "locator": "stain"}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", required=True, help="a local folder or zip in either layout")
    parser.add_argument("--rename", nargs="*", default=[], help="their_class=OUR_CLASS")
    parser.add_argument("checkpoints", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = [(path, *load_checkpoint(path)) for path in args.checkpoints]
    classes = list(loaded[0][2]["classes"])
    rename = dict(item.split("=", 1) for item in args.rename)
    print("| model | cut | statistics | images scored | accuracy (95 % CI) | macro sensitivity |")
    print("|---|---|---|---|---|---|")
    for cut, overrides in CUTS.items():
        settings = {"source": args.set, "rename": rename, **overrides}
        found = external.read_set("transfer", settings, [checkpoint["crop"] for _, _, checkpoint in loaded],
                                  classes, key="--set")
        for path, model, checkpoint in loaded:
            inputs = model_inputs(external.images_for(found, checkpoint["crop"], settings), checkpoint)
            for statistics in ("model", "own"):
                mean, std = external.statistics(inputs, checkpoint, {"statistics": statistics})
                probabilities = predict_probabilities(model, inputs, mean, std, tta=True).numpy()
                metrics = external.score(found.labels, probabilities, list(checkpoint["classes"]))
                low, high = metrics["accuracy_ci95"]
                print(f"| {path} | {cut} | {statistics} | {metrics['scored']} | {metrics['accuracy']:.3f} "
                      f"({low:.3f}-{high:.3f}) | {metrics['macro_sensitivity']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
