"""What DistributedDataParallel costs on one machine: a model trained by N processes of T threads each against one
process of N x T threads, on the same prepared data (wall time of the whole train stage, test accuracy).

Usage (in a project whose data/clean is prepared, e.g. after `dvc repro clean` with -S dataset=pbc):
    python benchmarks/ddp_overhead.py resnet [--layouts 1x2 2x1]
Each layout trains models/<model>.pt again through src/train.py with train.processes and train.threads set in
params.yaml (restored afterwards), then scores the test split as the evaluate stage does (its tta, calibrated).
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bloodcells.config.params import load_params
from bloodcells.data import classes as class_list, dataset as data
from bloodcells.models.inference import calibrate, load_checkpoint, model_inputs, predict_probabilities
from bloodcells.training import machine

PARAMS = Path("params.yaml")


def test_accuracy(name):
    settings = load_params(("evaluate",)).evaluate
    images, labels, _ = data.load_split("test", require_all_classes=False)
    model, checkpoint = load_checkpoint(Path("models") / f"{name}.pt", name, class_list.read())
    probabilities = calibrate(predict_probabilities(model, model_inputs(images, checkpoint), checkpoint.mean,
                                                    checkpoint.std, batch_size=settings.batch_size, tta=settings.tta),
                              checkpoint, settings.tta)
    return float((probabilities.argmax(dim=1) == labels).float().mean()), len(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="PROCESSESxTHREADS")
    args = parser.parse_args()
    original = PARAMS.read_text()
    rows = []
    try:
        for layout in args.layouts:
            processes, threads = map(int, layout.split("x"))
            params = yaml.safe_load(original)
            params["train"] |= {"processes": processes, "threads": threads}
            PARAMS.write_text(yaml.safe_dump(params, sort_keys=False))
            started = time.perf_counter()
            subprocess.run([sys.executable, "src/train.py", args.model], check=True)
            wall = time.perf_counter() - started
            summary = json.loads(Path(f"metrics/train/{args.model}/metrics.json").read_text())
            accuracy, count = test_accuracy(args.model)
            rows.append(f"| {processes} x {threads} | {wall / 60:.1f} | {summary['seconds_per_epoch']} | "
                        f"{summary['selected_val_accuracy']:.3f} | {accuracy:.3f} ({count} images) |")
            print(rows[-1], flush=True)
    finally:
        PARAMS.write_text(original)
    import torch
    print(f"# {args.model}, {machine.summary_line(machine.record(torch.device('cpu'), 'N x T', '-'))}")
    print("| processes x threads | train stage wall (min) | s/epoch | val accuracy | test accuracy |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
