"""A plain training loop: seeded, deterministic on the CPU, logged through DVCLive."""
import copy
import math
import random
import time
import warnings

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from bloodcells.data.dataset import augment, normalise, training_batches
from bloodcells.core.errors import UserError
from bloodcells.models.inference import CHANNELS_LAST, predict_probabilities
from bloodcells.training import distributed, resume
from bloodcells.training.machine import cpu_has_native_bf16
from bloodcells.training.timing import synchronise

def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(choice):
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no CUDA device is available; use auto or cpu")
    return torch.device(choice)


# Families whose training is faster in bf16 autocast than in fp32 on a CPU with native bfloat16 (AVX-512 BF16 or
# AMX), measured by benchmarks/precision.py; EfficientNet's depthwise convolutions are slower in bf16 there.
CPU_BF16_FASTER = {"resnet": True, "efficientnet": False, "alexnet": True}


def resolve_precision(precision, device, family=None):
    """The precision a run uses, 'bf16' or 'fp32'. auto: bf16 on CUDA; on the CPU bf16 only where it is native and
    faster for the family, else fp32. An explicit bf16 on a CPU that emulates it warns (it is several times slower)."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16"
        return "bf16" if CPU_BF16_FASTER.get(family, False) and cpu_has_native_bf16() else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("train.precision bf16: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), "
                      "so training will be slow; set precision: auto (fp32 here) for this model")
    return precision


def autocast_dtype(precision):
    """torch.bfloat16 for a resolved 'bf16', None (no autocast) for 'fp32'."""
    return torch.bfloat16 if precision == "bf16" else None


def make_optimizer(cfg, parameters):
    # fused: one kernel for all parameters, 10x faster on CPU for the stock AlexNet (57M parameters; ours has 20.3M)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=cfg.lr, momentum=0.9, nesterov=True,
                               weight_decay=cfg.weight_decay, fused=True)
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def warmup_cosine(optimizer, total_steps, warmup_steps):
    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def mixup(batch, alpha, generator, rng):
    """Blend each image with a random partner of the batch: (mixed batch, partner order, weight of the own image)."""
    partner = torch.randperm(len(batch), generator=generator).to(batch.device)
    weight = float(rng.beta(alpha, alpha))
    return weight * batch + (1 - weight) * batch[partner], partner, weight


class TrainingSetup:
    """What one optimisation step needs besides the batch: built once per run by train_model."""

    def __init__(self, model, cfg, steps_per_epoch, device, mean, std, dtype, generator):
        self.model, self.cfg, self.device, self.mean, self.std, self.dtype = model, cfg, device, mean, std, dtype
        self.network, self.processes = distributed.wrap(model, device), distributed.world()[1]  # the step's model
        self.generator, self.mixup_rng = generator, np.random.default_rng(cfg.seed)
        self.optimizer = make_optimizer(cfg, model.parameters())
        self.scheduler = warmup_cosine(self.optimizer, cfg.epochs * steps_per_epoch,
                                       cfg.warmup_epochs * steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.ema = None
        if cfg.ema > 0:
            self.ema = torch.optim.swa_utils.AveragedModel(
                model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True)

    def prepare(self, images):
        """A uint8 batch augmented on the device (every random draw from the run's generator), normalised."""
        cfg = self.cfg
        batch = augment(images.to(self.device).float() / 255, self.generator, cfg.colour_jitter, cfg.max_shift,
                        cfg.max_scale, cfg.max_rotation, cfg.stain_jitter, cfg.blur)
        return normalise(batch.mul_(255), self.mean, self.std).to(self.device, memory_format=CHANNELS_LAST)


def train_one_epoch(setup, batches, progress):
    """One pass over `batches` (uint8 images, labels); returns (mean loss, accuracy, seconds spent preparing data)."""
    model, cfg = setup.model, setup.cfg
    setup.network.train()
    seen = correct = 0
    loss_sum = data_seconds = 0.0
    fetched = time.perf_counter()
    for images, target in batches:
        if len(target) < setup.processes:  # a last batch smaller than the process count would leave a share empty
            continue
        count = len(target)
        batch, target = setup.prepare(images), target.to(setup.device)
        if cfg.mixup > 0:
            batch, partner, weight = mixup(batch, cfg.mixup, setup.generator, setup.mixup_rng)
            partner_target = target[partner]
        if setup.processes > 1:  # every process drew the whole batch as one would; each trains on its share
            part = distributed.share(count)
            batch, target = batch[part], target[part]
            if cfg.mixup > 0:
                partner_target = partner_target[part]
        synchronise(setup.device)
        data_seconds += time.perf_counter() - fetched
        with torch.autocast(setup.device.type, dtype=setup.dtype or torch.bfloat16, enabled=setup.dtype is not None):
            logits = setup.network(batch)
            loss = setup.criterion(logits.float(), target)
            if cfg.mixup > 0:
                loss = weight * loss + (1 - weight) * setup.criterion(logits.float(), partner_target)
        setup.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        setup.optimizer.step()
        setup.scheduler.step()
        if setup.ema is not None:
            setup.ema.update_parameters(model)
        seen += len(target)
        correct += int((logits.argmax(dim=1) == target).sum())
        loss_sum += float(loss.detach()) * len(target)
        progress.update(count)
        fetched = time.perf_counter()
    loss_sum, correct, seen = distributed.total((loss_sum, correct, seen), setup.device)
    return loss_sum / seen, correct / seen, data_seconds


def evaluate(model, images, labels, setup):
    """(loss, accuracy) of `model` on uint8 images with their labels, without augmentation."""
    probabilities = predict_probabilities(model, images, setup.mean, setup.std, device=setup.device,
                                          dtype=setup.dtype)
    loss = float(nn.functional.nll_loss(probabilities.clamp_min(1e-8).log(), labels))
    return loss, float((probabilities.argmax(dim=1) == labels).float().mean())


def train_model(model, train_set, val_set, cfg, live, device, mean, std, saved_run=None):
    """Train on a CropDataset, log each epoch to `live`, and return the chosen weights and summary metrics. With a
    resume.SavedRun, the run continues from the state an interrupted run saved, and saves its own every epoch. Under
    torchrun every process trains its share; process 0 alone validates, logs and saves, and the others return
    (None, None)."""
    rank = distributed.world()[0]
    generator = torch.Generator().manual_seed(cfg.seed)
    precision = resolve_precision(cfg.precision, device, cfg.name)
    model.to(device, memory_format=CHANNELS_LAST)
    if hasattr(train_set, "to"):
        train_set = train_set.to(device)
    batches = training_batches(train_set, cfg.batch_size, generator, cfg.seed)
    steps = cfg.epochs * len(batches)
    if 0 < cfg.ema and steps < 3 / (1 - cfg.ema):
        warnings.warn(f"{cfg.name}: ema {cfg.ema} averages over about {1 / (1 - cfg.ema):.0f} steps, but "
                      f"this run has only {steps}, so the kept weights still hold barely "
                      f"trained ones; set a lower ema (the synthetic demo uses 0.9) or 0 for small data")
    setup = TrainingSetup(model, cfg, len(batches), device, mean, std, autocast_dtype(precision), generator)
    generators = {"run": generator, "loader": batches.generator, "mixup": setup.mixup_rng}
    run = {"epoch": 0, "best": {"accuracy": -1.0, "loss": math.inf, "epoch": 0}, "chosen": None,
           "data_seconds": 0.0, "train_seconds": 0.0, "history": []}
    saved = saved_run.load() if saved_run is not None else None
    if saved is not None:
        run = restore(setup, saved, generators)
        for epoch, logged in enumerate(run["history"] if live is not None else [], start=1):
            log_epoch(live, epoch, logged)  # the curves as the stopped run had drawn them
    progress = tqdm(total=cfg.epochs * len(train_set), initial=run["epoch"] * len(train_set),
                    desc=f"train {cfg.name}", unit="img", unit_scale=True, disable=None if rank == 0 else True)
    for epoch in range(run["epoch"] + 1, cfg.epochs + 1):
        started = time.perf_counter()
        train_loss, train_accuracy, waited = train_one_epoch(setup, batches, progress)
        run["train_seconds"] += time.perf_counter() - started
        run["data_seconds"] += waited
        if rank != 0:
            continue
        evaluated = setup.ema.module if setup.ema is not None else model
        val_loss, val_accuracy = evaluate(evaluated, val_set.images, val_set.labels, setup)
        logged = {"train/loss": train_loss, "train/accuracy": train_accuracy, "val/loss": val_loss,
                  "val/accuracy": val_accuracy}
        log_epoch(live, epoch, logged)
        progress.set_postfix(epoch=epoch, loss=f"{train_loss:.3f}", val_acc=f"{val_accuracy:.3f}")
        best = run["best"]
        if (val_accuracy, -val_loss) >= (best["accuracy"], -best["loss"]):
            run["best"] = {"accuracy": val_accuracy, "loss": val_loss, "epoch": epoch}
        if cfg.select == "last" or run["best"]["epoch"] == epoch:
            run["chosen"] = {"epoch": epoch, "val_accuracy": val_accuracy,
                             "state": copy.deepcopy(evaluated.state_dict())}
        run["epoch"] = epoch
        run["history"].append(logged)
        if saved_run is not None:
            saved_run.save(state_of(setup, run, generators))
    progress.close()
    if rank != 0:
        return None, None
    train_seconds, chosen = run["train_seconds"], run["chosen"]
    summary = {
        "best_epoch": run["best"]["epoch"],
        "best_val_accuracy": run["best"]["accuracy"],
        "selected_epoch": chosen["epoch"],
        "selected_val_accuracy": chosen["val_accuracy"],
        "train_seconds": round(train_seconds, 2),
        "images_per_second": round(cfg.epochs * len(train_set) / train_seconds, 1),
        "seconds_per_epoch": round(train_seconds / cfg.epochs, 2),
        "data_wait_share": round(run["data_seconds"] / train_seconds, 4),
        "precision": precision,  # the one that ran, not a metric: train.py records it with the machine
    }
    return chosen["state"], summary


def log_epoch(live, epoch, logged):
    live.step = epoch  # the plots' x axis counts epochs from 1
    for name, value in logged.items():
        live.log_metric(name, value)
    live.make_summary()


def state_of(setup, run, generators):
    """Everything the rest of the run depends on, after its last complete epoch. With select: last the kept weights
    are this epoch's average, saved once."""
    if setup.cfg.select == "last":
        run = {**run, "chosen": {**run["chosen"], "state": None}}
    return {**run, "model": setup.model.state_dict(), "optimizer": setup.optimizer.state_dict(),
            "scheduler": setup.scheduler.state_dict(),
            "ema": setup.ema.state_dict() if setup.ema is not None else None,
            "random": resume.random_states(generators)}


def restore(setup, saved, generators):
    """Put a saved state back into `setup` and the generators; returns the run's record (epoch, best, chosen, ...)."""
    setup.model.load_state_dict(saved["model"])
    setup.optimizer.load_state_dict(saved["optimizer"])
    setup.scheduler.load_state_dict(saved["scheduler"])
    if setup.ema is not None:
        setup.ema.load_state_dict(saved["ema"])
    resume.restore_random_states(saved["random"], generators)
    run = {key: saved[key] for key in ("epoch", "best", "chosen", "data_seconds", "train_seconds", "history")}
    if run["chosen"]["state"] is None:
        evaluated = setup.ema.module if setup.ema is not None else setup.model
        run["chosen"]["state"] = copy.deepcopy(evaluated.state_dict())
    return run
