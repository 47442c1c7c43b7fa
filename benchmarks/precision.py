"""Training speed of each family's default recipe in fp32 and bf16 autocast, channels-last or not, on this CPU.

Usage: python benchmarks/precision.py [--steps 6] [--threads 2]
       ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/precision.py   # as on an AVX2-only CPU

One step = forward, backward and a fused AdamW step on a batch of random images at the model's image_size and
batch_size of params.yaml, as training runs it; the first two steps are warm-up. Prints seconds per step and
images/s, and which setting `precision: auto` picks here (src/bloodcells/training/loop.py's CPU_BF16_FASTER).
"""
import argparse

import torch

from bloodcells.training import machine
from bloodcells.config.params import load_params
from bloodcells.training.recipe import recipe
from bloodcells.models.factory import alexnet_options, build_model
from bloodcells.training.loop import CPU_BF16_FASTER, resolve_precision
from bloodcells.training.timing import seconds_per_step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_params(("train", "models"))
    record = machine.record(torch.device("cpu"), args.threads, "-")
    print(f"# {machine.summary_line(record)}; native bf16: {record['native_bf16']}")
    print("| model | image size | batch | fp32 s/step | fp32 channels-last s/step | bf16 channels-last s/step | "
          "bf16 / fp32 (channels-last) | auto picks |")
    print("|---|---|---|---|---|---|---|---|")
    for name in config.models:
        cfg = recipe(config, name, "train")
        size, batch = cfg.image_size, cfg.batch_size
        timed = {}
        for label, dtype, channels_last in (("fp32", None, False), ("fp32-cl", None, True),
                                            ("bf16-cl", torch.bfloat16, True)):
            torch.manual_seed(0)
            model = build_model(name, cfg.arch, size, num_classes=4, **alexnet_options(cfg))
            timed[label] = seconds_per_step(model, size, batch, dtype, channels_last, args.steps)
        picked = resolve_precision("auto", torch.device("cpu"), name)
        print(f"| {name} ({cfg.arch}) | {size} | {batch} | {timed['fp32']:.3f} | {timed['fp32-cl']:.3f} | "
              f"{timed['bf16-cl']:.3f} | {timed['bf16-cl'] / timed['fp32-cl']:.2f} | {picked} "
              f"(bf16 where native: {CPU_BF16_FASTER[name]}) |", flush=True)


if __name__ == "__main__":
    main()
