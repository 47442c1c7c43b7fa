"""How long one training step takes: the measure the precision, throughput and data-path benchmarks share."""
import time

import torch


def seconds_per_step(model, size, batch, dtype, channels_last, steps, device="cpu"):
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    images = torch.randn(batch, 3, size, size, device=device).to(memory_format=memory_format)
    labels = torch.randint(0, 4, (batch,), device=device)
    times = []
    for _ in range(steps + 2):
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronise(device)
        times.append(time.perf_counter() - started)
    return sorted(times[2:])[len(times[2:]) // 2]  # the median after warm-up


def add_step_options(parser):
    """The options the step benchmarks share: the input side and batch (default: each model's params.yaml recipe),
    how many steps to time and on how many threads."""
    parser.add_argument("--image-size", type=int, help="input side (default: each model's recipe)")
    parser.add_argument("--batch-size", type=int, help="batch (default: each model's recipe)")
    parser.add_argument("--steps", type=int, default=6, help="steps timed after 2 of warm-up")
    parser.add_argument("--threads", type=int, default=2)


def synchronise(device):
    """Wait for a GPU's queued work, so that a clock read after it times the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
