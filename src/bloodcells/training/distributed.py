"""One model trained by several processes with DistributedDataParallel: gloo on the CPU, NCCL on CUDA.

Every process draws the same global batch, augments and mixes it with the same generators as a one-process run, and
trains on its own share of it; DDP averages the gradients, so the global batch is train.batch_size and the learning
rate stays the recipe's. Batch norm is per process (each normalises its share), as DDP leaves it: a synchronised batch
norm would add a gloo round trip to every layer of every step on the CPU. Process 0 alone validates, logs and writes.
"""
import os
import subprocess
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def world():
    """(rank, number of processes) of this process: (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def relaunch(processes):
    """Run this script again under torchrun with `processes` processes on this machine; returns torchrun's exit
    status (a process that fails stops the others)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               sys.argv[0], *sys.argv[1:]]
    return subprocess.run(command).returncode


def start(device):
    """Join the process group torchrun set up; returns the device of this process (its own GPU on CUDA)."""
    if world()[1] == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def finish():
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model, device):
    """The model as the training step calls it: under DDP with several processes, itself with one."""
    if world()[1] == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def share(count):
    """This process's part of a global batch of `count` (a slice: contiguous parts, sizes differing by one)."""
    rank, size = world()
    base, extra = divmod(count, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def total(numbers, device):
    """The sums of `numbers` over every process (the numbers themselves with one); NCCL sums on the GPU."""
    if world()[1] == 1:
        return tuple(numbers)
    summed = torch.tensor(numbers, dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    return tuple(summed.tolist())
