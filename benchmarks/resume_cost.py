"""What saving a training run's whole state each epoch costs (src/bloodcells/training/resume.py): seconds per save
and megabytes, for each model of a dataset's recipe, after one real training step so that the optimiser holds its
moments.

Usage: python benchmarks/resume_cost.py [--dataset pbc] [--classes 8] [--repeats 3]
Compare the seconds with the recipe's seconds per epoch (metrics/train/<model>/metrics.json or the records).
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
from dvc.utils.hydra import compose_and_dump

from bloodcells.config.params import load_params
from bloodcells.models.factory import alexnet_options, build_model
from bloodcells.training import machine, resume
from bloodcells.training.loop import TrainingSetup, state_of
from bloodcells.training.recipe import recipe


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pbc")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        params = Path(folder) / "params.yaml"
        compose_and_dump(params, str(Path("conf").resolve()), None, "config", "",
                         [f"dataset={args.dataset}", "data.source=/unused"])
        config = load_params(("train", "models"), path=params)
        torch.set_num_threads(config.train.threads)
        print(f"# {machine.summary_line(machine.record(torch.device('cpu'), config.train.threads, '-'))}")
        print("| model | parameters | state (MB) | seconds per save |")
        print("|---|---|---|---|")
        for name in config.models:
            cfg = recipe(config, name, "train")
            model = build_model(name, cfg.arch, cfg.image_size, num_classes=args.classes, **alexnet_options(cfg))
            setup = TrainingSetup(model, cfg, 100, torch.device("cpu"), [0.5] * 3, [0.25] * 3, None,
                                  torch.Generator().manual_seed(0))
            images = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size)
            loss = setup.criterion(model(images), torch.arange(cfg.batch_size) % args.classes)
            loss.backward()
            setup.optimizer.step()
            if setup.ema is not None:
                setup.ema.update_parameters(model)
            run = {"epoch": 1, "best": {"accuracy": 0.5, "loss": 1.0, "epoch": 1}, "data_seconds": 0.0,
                   "train_seconds": 1.0, "history": [{"val/accuracy": 0.5}],
                   "chosen": {"epoch": 1, "val_accuracy": 0.5, "state": model.state_dict()}}
            generators = {"run": setup.generator, "mixup": setup.mixup_rng}
            saved = resume.SavedRun(name, {"recipe": cfg.model_dump(mode="json")})
            saved.path = Path(folder) / name / resume.STATE_FILE
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                saved.save(state_of(setup, run, generators))
                times.append(time.perf_counter() - started)
            parameters = sum(p.numel() for p in model.parameters())
            print(f"| {name} ({cfg.arch}, {cfg.image_size} px) | {parameters / 1e6:.1f} M | "
                  f"{saved.path.stat().st_size / 1e6:.0f} | {min(times):.2f} (median {sorted(times)[len(times) // 2]:.2f}) |",
                  flush=True)


if __name__ == "__main__":
    main()
