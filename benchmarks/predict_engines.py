"""predict's two engines on this CPU: photographs classified per second and per-batch latency (p50, p95), eager
PyTorch against ONNX Runtime, at batch 1 and 32, with and without the 8-view test-time augmentation.

Usage: python benchmarks/predict_engines.py models/*.pt [--crops 256] [--threads 2] [--repeats 3]

Times the classification of prepared crops (the locating and cutting before it are the same code for both engines),
each checkpoint exported to a temporary ONNX file as the export stage does. The crops are the test split's
(data/clean) when it is there, else random pixels. Prints a Markdown table and the CPU it ran on.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bloodcells.training import machine
from bloodcells.models.inference import calibrate, load_checkpoint, model_inputs, predict_probabilities
from bloodcells.models.onnx_engine import OnnxModel
from bloodcells.models.onnx_export import export


def test_crops(count, side):
    clean = Path("data/clean")
    if (clean / "test.csv").is_file():
        from bloodcells.data import dataset as data
        images, _, _ = data.load_split("test", clean, require_all_classes=False)
        images = images.repeat((count + len(images) - 1) // len(images), 1, 1, 1)[:count]
        return [image.permute(1, 2, 0).numpy() for image in images]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(count)]


def timed(classify, crops, batch):
    """(photographs per second, p50 and p95 milliseconds a batch) over the crops in batches of `batch`."""
    latencies = []
    started = time.perf_counter()
    for start in range(0, len(crops), batch):
        begun = time.perf_counter()
        classify(crops[start:start + batch])
        latencies.append(1000 * (time.perf_counter() - begun))
    seconds = time.perf_counter() - started
    return len(crops) / seconds, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--crops", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="the best of this many runs is reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {machine.summary_line(machine.record(torch.device('cpu'), args.threads, 'fp32'))}\n")
    print("| model | TTA | batch | PyTorch img/s | p50 / p95 ms | ONNX Runtime img/s | p50 / p95 ms | ONNX / PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for path in args.checkpoints:
            model, checkpoint = load_checkpoint(path)
            onnx_path = Path(folder) / f"{Path(path).stem}.onnx"
            export(model, checkpoint, onnx_path)
            model, checkpoint = load_checkpoint(path)  # export changed its memory format; time it as predict runs it
            session = OnnxModel(onnx_path)
            crops = test_crops(args.crops, checkpoint.crop["image_size"])
            for tta in (False, True):
                for batch in (1, 32):
                    def by_torch(part):
                        inputs = model_inputs(part, checkpoint)
                        raw = predict_probabilities(model, inputs, checkpoint.mean, checkpoint.std, batch, tta)
                        return calibrate(raw, checkpoint, tta).numpy()

                    def by_onnx(part):
                        return session.probabilities(part, batch, tta)

                    results = {}
                    for name, classify in (("torch", by_torch), ("onnx", by_onnx)):
                        classify(crops[:batch])  # warm-up
                        results[name] = max((timed(classify, crops, batch) for _ in range(args.repeats)),
                                            key=lambda r: r[0])
                    (t_rate, t50, t95), (o_rate, o50, o95) = results["torch"], results["onnx"]
                    print(f"| {checkpoint.arch} | {'8 views' if tta else 'off'} | {batch} | {t_rate:.0f} | "
                          f"{t50:.1f} / {t95:.1f} | {o_rate:.0f} | {o50:.1f} / {o95:.1f} | {o_rate / t_rate:.2f}x |",
                          flush=True)


if __name__ == "__main__":
    main()
