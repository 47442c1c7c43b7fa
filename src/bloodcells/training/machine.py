"""What machine a run is on: the CPU's model and the instruction sets that decide speed and last bits, the
device, torch's version and the thread count. Training records it next to its metrics and in the checkpoint,
so a result says which machine made it; `precision: auto` asks it whether bfloat16 is native here."""
import os
import platform
from pathlib import Path

import torch

# The flags of /proc/cpuinfo that change which kernels torch runs, and so the speed and the last bits.
CPU_FLAGS = {"avx2": "avx2", "avx512": "avx512f", "avx512_bf16": "avx512_bf16", "amx_bf16": "amx_bf16"}


def cpu_model():
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags():
    """{avx2, avx512, avx512_bf16, amx_bf16: bool} from /proc/cpuinfo (all False where it cannot be read)."""
    flags = set()
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("flags", "features")):
            flags |= set(line.split(":", 1)[1].split())
            break
    return {name: flag in flags for name, flag in CPU_FLAGS.items()}


def _cpuinfo():
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_native_bf16():
    """Whether oneDNN runs bfloat16 natively here (AVX-512 BF16 or AMX); elsewhere it is emulated and slow.

    oneDNN's own answer, so a limit set with ONEDNN_MAX_CPU_ISA (how an AVX2-only CPU is imitated) is obeyed."""
    try:
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def record(device, threads, precision):
    """The record of one run: device, CPU, its relevant flags, torch, threads and the precision actually used."""
    record = {"device": str(device), "cpu": cpu_model(), **{f"cpu_{k}": v for k, v in cpu_flags().items()},
              "native_bf16": cpu_has_native_bf16(), "torch_cpu_kernels": torch.backends.cpu.get_cpu_capability(),
              "torch": torch.__version__, "threads": threads, "precision": precision}
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):  # an imitated smaller CPU (benchmarks: AVX2 only) says so
        record["onednn_max_cpu_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def summary_line(record):
    """One line for compare.md and the sweep: `cpu (AVX2, AVX-512 BF16), torch 2.14.1, 2 threads, bf16`."""
    flags = [label for key, label in (("cpu_avx2", "AVX2"), ("cpu_avx512", "AVX-512"),
                                      ("cpu_avx512_bf16", "AVX-512 BF16"), ("cpu_amx_bf16", "AMX")) if record.get(key)]
    where = record.get("gpu") or f"{record.get('cpu')} ({', '.join(flags) or 'no AVX2'})"
    kernels = record.get("torch_cpu_kernels")
    if not kernels:  # a record made before the kernels were recorded
        return f"{where}, torch {record.get('torch')}, {record.get('threads')} threads"
    held = f", oneDNN held to {record['onednn_max_cpu_isa']}" if record.get("onednn_max_cpu_isa") else ""
    return f"{where}, torch {record.get('torch')} ({kernels} kernels{held}), {record.get('threads')} threads"


def trained_on_lines(records):
    """{model: machine record or None} -> the lines that say which machine trained the models, in which precision:
    one line when one machine trained them all."""
    made_on = {name: summary_line(r) if r else "not recorded (trained before machine.json)"
               for name, r in records.items()}
    precision = ", ".join(f"{name} {r['precision'] if r else '?'}" for name, r in records.items())
    if len(set(made_on.values())) == 1:
        return [f"Trained on {next(iter(made_on.values()))}; precision: {precision}."]
    return [f"- {name}: trained on {line}" for name, line in made_on.items()] + [f"Precision: {precision}."]
