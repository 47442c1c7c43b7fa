"""How many images per second the training data path can deliver, against what a training step consumes.

Usage: python benchmarks/data_path.py [--images 7376] [--stored 80] [--image-size S] [--batch-size B] [--threads 2]
       [--steps 6] [--models ...]       # PBC's recipe: --image-size 64 --batch-size 64

The data path is the training loop's own: crops held as uint8 at the training side (CropDataset, moved to the
training device as train_model moves it), drawn in ShuffledBatches, augmented with PBC's recipe (dihedral view,
colour jitter, shift) and normalised by TrainingSetup.prepare, every random number from the run's CPU generator.
It runs on the CPU and, where one is present, on the GPU. Each family's training step (forward, backward, fused
AdamW, at its params.yaml side and batch unless --image-size / --batch-size say otherwise, in the precision `auto`
picks on that device) is timed on the same device;
"data wait" is the data path's share of data + step, what the loop's data_wait_share measures in a real run.
The images are random (the work does not depend on their content).
"""
import argparse
import time

import torch

from bloodcells.config.params import load_params
from bloodcells.data.dataset import CropDataset, training_batches
from bloodcells.models.factory import alexnet_options, build_model
from bloodcells.training import machine
from bloodcells.training.loop import TrainingSetup, autocast_dtype, resolve_precision
from bloodcells.training.recipe import recipe
from bloodcells.training.timing import add_step_options, seconds_per_step, synchronise


def data_seconds_per_batch(dataset, cfg, device, epochs=2):
    """Median seconds to draw, augment and normalise one batch on `device`, in the last of `epochs` passes."""
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(1, 1)  # TrainingSetup builds an optimiser; the data path needs none of it
    setup = TrainingSetup(model, cfg, 1, device, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), None, generator)
    held = dataset.to(device)
    for epoch in range(epochs):  # the first warms up (caches, the allocator), the last is timed
        times = []
        started = time.perf_counter()
        for images, _labels in training_batches(held, cfg.batch_size, generator):
            setup.prepare(images)
            synchronise(device)
            times.append(time.perf_counter() - started)
            started = time.perf_counter()
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=7376, help="training crops (PBC fold 0: 7,376)")
    parser.add_argument("--stored", type=int, default=80, help="side of the stored crops (clean.image_size)")
    add_step_options(parser)
    parser.add_argument("--models", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_params(("train", "models"))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    stored = torch.randint(0, 256, (args.images, 3, args.stored, args.stored), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    print(f"# {machine.summary_line(machine.record(torch.device('cpu'), args.threads, '-'))}")
    if torch.cuda.is_available():
        print(f"# GPU: {torch.cuda.get_device_name()}")
    print("| device | model | px | batch | precision | data path img/s | training step img/s | data wait |")
    print("|---|---|---|---|---|---|---|---|")
    for device in devices:
        for name in args.models or list(config.models):
            cfg = recipe(config, name, "train")
            cfg = cfg.model_copy(update={key: value for key, value in (("image_size", args.image_size),
                                                                        ("batch_size", args.batch_size)) if value})
            dataset = CropDataset.from_tensors(stored, torch.arange(args.images) % 8, [], list(range(8)),
                                               cfg.image_size)
            data = data_seconds_per_batch(dataset, cfg, device)
            precision = resolve_precision("auto", device, name)
            torch.manual_seed(0)
            model = build_model(name, cfg.arch, cfg.image_size, num_classes=8, **alexnet_options(cfg))
            step = seconds_per_step(model, cfg.image_size, cfg.batch_size, autocast_dtype(precision), True,
                                    args.steps, device)
            print(f"| {device.type} | {name} | {cfg.image_size} | {cfg.batch_size} | {precision} | "
                  f"{cfg.batch_size / data:,.0f} | {cfg.batch_size / step:,.0f} | {data / (data + step):.1%} |",
                  flush=True)


if __name__ == "__main__":
    main()
