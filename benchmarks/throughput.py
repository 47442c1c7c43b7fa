"""How close training runs to this CPU's limit: images/s of each family against the CPU's measured matmul
throughput, and what each speed lever (memory format, precision, batch size, torch.compile) changes.

Usage: python benchmarks/throughput.py [--image-size 64] [--batch-size 64] [--steps 6] [--threads 2] [--compile]
       ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/throughput.py   # as on an AVX2-only CPU

The CPU's limit is the median rate of a 1024 x 1024 matrix product in fp32 (and in bf16 where it is native),
the best a dense layer can do here. A training step's work is counted as three forward passes (forward,
then the gradients of the activations and of the weights), with the forward pass's floating-point operations
counted by torch.utils.flop_counter on one image. A step is benchmarks/precision.py's: forward, backward and a
fused AdamW step on random images. --compile adds torch.compile (its compile time is printed apart).
Without --image-size or --batch-size each model's params.yaml recipe is used.
"""
import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bloodcells.training import machine
from bloodcells.config.params import load_params
from bloodcells.training.recipe import recipe
from bloodcells.models.factory import alexnet_options, build_model
from bloodcells.training.loop import resolve_precision
from bloodcells.training.timing import add_step_options, seconds_per_step


def matmul_gflops(dtype, side=1024, repeats=10):
    a, b = torch.randn(side, side, dtype=dtype), torch.randn(side, side, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - started)
    return 2 * side ** 3 / sorted(times)[len(times) // 2] / 1e9


def forward_flops(model, size):
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, size, size))
    return counter.get_total_flops()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_options(parser)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_params(("train", "models"))
    record = machine.record(torch.device("cpu"), args.threads, "-")
    peak = {"fp32": matmul_gflops(torch.float32)}
    if record["native_bf16"]:
        peak["bf16"] = matmul_gflops(torch.bfloat16)
    print(f"# {machine.summary_line(record)}; native bf16: {record['native_bf16']}")
    print("# matmul limit: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
    print("| model | px | batch | GFLOP per image (train step) | setting | s/step | img/s | GFLOP/s | "
          "share of the matmul limit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in config.models:
        cfg = recipe(config, name, "train")
        size, batch = args.image_size or cfg.image_size, args.batch_size or cfg.batch_size

        def fresh():
            torch.manual_seed(0)
            return build_model(name, cfg.arch, size, num_classes=8, **alexnet_options(cfg))

        work = 3 * forward_flops(fresh(), size) / 1e9
        auto = resolve_precision("auto", torch.device("cpu"), name)
        settings = [("fp32", None, False, batch), ("fp32 channels-last", None, True, batch)]
        if "bf16" in peak:
            settings.append(("bf16 channels-last", torch.bfloat16, True, batch))
        auto_dtype = torch.bfloat16 if auto == "bf16" else None
        settings += [(f"{auto} (auto) channels-last, batch {b}", auto_dtype, True, b) for b in (batch // 2, batch * 2)]
        for label, dtype, channels_last, b in settings:
            seconds = seconds_per_step(fresh(), size, b, dtype, channels_last, args.steps)
            rate = work * b / seconds
            limit = peak["bf16" if dtype is not None else "fp32"]
            print(f"| {name} | {size} | {b} | {work:.3f} | {label} | {seconds:.3f} | {b / seconds:.0f} | "
                  f"{rate:.0f} | {rate / limit:.0%} |", flush=True)
        if args.compile:
            started = time.perf_counter()
            compiled = torch.compile(fresh())
            seconds_per_step(compiled, size, batch, auto_dtype, True, 1)
            compile_seconds = time.perf_counter() - started
            seconds = seconds_per_step(compiled, size, batch, auto_dtype, True, args.steps)
            rate = work * batch / seconds
            print(f"| {name} | {size} | {batch} | {work:.3f} | {auto} (auto) channels-last, torch.compile "
                  f"({compile_seconds:.0f} s to compile) | {seconds:.3f} | {batch / seconds:.0f} | {rate:.0f} | "
                  f"{rate / peak['bf16' if auto == 'bf16' else 'fp32']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
