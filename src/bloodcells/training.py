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

from .data import augment, normalise
from .errors import UserError
from .inference import CHANNELS_LAST, predict_probabilities
from .machine import cpu_has_native_bf16

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
    # fused: one kernel for all parameters; AlexNet's 57M-parameter AdamW step is 10x faster on CPU
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(parameters, lr=cfg["lr"], momentum=0.9, nesterov=True,
                               weight_decay=cfg["weight_decay"], fused=True)
    optimizer = torch.optim.AdamW if cfg["optimizer"] == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=True)


def warmup_cosine(optimizer, total_steps, warmup_steps):
    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def mixup(batch, alpha, generator, rng):
    """Blend each image with a random partner of the batch: (mixed batch, partner order, weight of the own image)."""
    partner = torch.randperm(len(batch), generator=generator)
    weight = float(rng.beta(alpha, alpha))
    return weight * batch + (1 - weight) * batch[partner], partner, weight


def train_model(model, train_data, val_data, cfg, live, device, mean, std):
    """Train, log each epoch to `live`, and return the chosen weights and summary metrics."""
    train_images, train_labels = train_data
    val_images, val_labels = val_data
    generator = torch.Generator().manual_seed(cfg["seed"])
    use_mixup, mixup_rng = cfg["mixup"] > 0, np.random.default_rng(cfg["seed"])
    precision = resolve_precision(cfg["precision"], device, cfg["name"])
    dtype = autocast_dtype(precision)
    model.to(device, memory_format=CHANNELS_LAST)
    optimizer = make_optimizer(cfg, model.parameters())
    steps_per_epoch = math.ceil(len(train_images) / cfg["batch_size"])
    scheduler = warmup_cosine(optimizer, cfg["epochs"] * steps_per_epoch, cfg["warmup_epochs"] * steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])
    ema = None
    if 0 < cfg["ema"] and cfg["epochs"] * steps_per_epoch < 3 / (1 - cfg["ema"]):
        warnings.warn(f"{cfg['name']}: ema {cfg['ema']} averages over about {1 / (1 - cfg['ema']):.0f} steps, but "
                      f"this run has only {cfg['epochs'] * steps_per_epoch}, so the kept weights still hold barely "
                      f"trained ones; set a lower ema (the synthetic demo uses 0.9) or 0 for small data")
    if cfg["ema"] > 0:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg["ema"]), use_buffers=True)
    best = {"accuracy": -1.0, "loss": math.inf, "epoch": 0}
    chosen = None
    data_seconds = train_seconds = 0.0
    epochs = tqdm(range(1, cfg["epochs"] + 1), desc=f"train {cfg['name']}", unit="epoch", disable=None)
    for epoch in epochs:
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(train_images), generator=generator)
        seen = correct = 0
        loss_sum = 0.0
        for start in range(0, len(order), cfg["batch_size"]):
            fetched = time.perf_counter()
            index = order[start:start + cfg["batch_size"]]
            batch = augment(train_images[index].float() / 255, generator, cfg["colour_jitter"], cfg["max_shift"],
                            cfg["max_scale"], cfg["max_rotation"])
            batch = normalise(batch * 255, mean, std).to(device, memory_format=CHANNELS_LAST)
            target = train_labels[index].to(device)
            if use_mixup:
                batch, partner, weight = mixup(batch, cfg["mixup"], generator, mixup_rng)
            data_seconds += time.perf_counter() - fetched
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logits = model(batch)
                loss = criterion(logits.float(), target)
                if use_mixup:
                    loss = weight * loss + (1 - weight) * criterion(logits.float(), target[partner])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            seen += len(index)
            correct += int((logits.argmax(dim=1) == target).sum())
            loss_sum += float(loss.detach()) * len(index)
        train_seconds += time.perf_counter() - started
        evaluated = ema.module if ema is not None else model
        probabilities = predict_probabilities(evaluated, val_images, mean, std, device=device, dtype=dtype)
        val_loss = float(nn.functional.nll_loss(probabilities.clamp_min(1e-8).log(), val_labels))
        val_accuracy = float((probabilities.argmax(dim=1) == val_labels).float().mean())
        live.step = epoch  # the plots' x axis counts epochs from 1
        live.log_metric("train/loss", loss_sum / seen)
        live.log_metric("train/accuracy", correct / seen)
        live.log_metric("val/loss", val_loss)
        live.log_metric("val/accuracy", val_accuracy)
        live.make_summary()
        epochs.set_postfix(loss=f"{loss_sum / seen:.3f}", val_acc=f"{val_accuracy:.3f}")
        if (val_accuracy, -val_loss) >= (best["accuracy"], -best["loss"]):
            best = {"accuracy": val_accuracy, "loss": val_loss, "epoch": epoch}
        if cfg["select"] == "last" or best["epoch"] == epoch:
            chosen = {"epoch": epoch, "val_accuracy": val_accuracy, "state": copy.deepcopy(evaluated.state_dict())}
    summary = {
        "best_epoch": best["epoch"],
        "best_val_accuracy": best["accuracy"],
        "selected_epoch": chosen["epoch"],
        "selected_val_accuracy": chosen["val_accuracy"],
        "train_seconds": round(train_seconds, 2),
        "images_per_second": round(cfg["epochs"] * len(train_images) / train_seconds, 1),
        "seconds_per_epoch": round(train_seconds / cfg["epochs"], 2),
        "data_wait_share": round(data_seconds / train_seconds, 4),
        "precision": precision,  # the one that ran, not a metric: train.py records it with the machine
    }
    return chosen["state"], summary
