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
from .errors import UserError, require
from .inference import CHANNELS_LAST, predict_probabilities

OPTIMIZERS = ("adamw", "adam", "sgd")


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
    require(choice in ("cpu", "cuda"), f"train.device must be auto, cpu or cuda, got {choice!r}")
    return torch.device(choice)


def autocast_dtype(precision, device):
    """bfloat16 autocast on CUDA by default ('auto'), on the CPU only when asked for ('bf16')."""
    require(precision in ("auto", "fp32", "bf16"), f"train.precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("train.precision bf16: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), "
                      "so training will be slow; set precision: fp32 for this model")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def cpu_has_native_bf16():
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


def check_config(name, cfg):
    def positive(key, kind):
        value = cfg.get(key)
        require(isinstance(value, kind) and not isinstance(value, bool) and value > 0,
                f"models.{name}.{key} (or train.{key}) must be a positive {kind.__name__}, got {value!r}")

    positive("epochs", int)
    positive("threads", int)
    positive("batch_size", int)
    positive("image_size", int)
    require(isinstance(cfg.get("lr"), (int, float)) and cfg["lr"] > 0,
            f"models.{name}.lr (or train.lr) must be > 0, got {cfg.get('lr')!r}")
    require(cfg.get("optimizer") in OPTIMIZERS,
            f"models.{name}.optimizer must be one of {', '.join(OPTIMIZERS)}, got {cfg.get('optimizer')!r}")
    require(cfg.get("weight_decay", 0) >= 0, f"models.{name}.weight_decay must be >= 0")
    require(0 <= cfg.get("label_smoothing", 0) < 1, f"models.{name}.label_smoothing must be in [0, 1)")
    require(0 <= cfg.get("ema", 0) < 1, f"models.{name}.ema must be in [0, 1) (0 turns it off)")
    require(cfg.get("select") in ("best", "last"), f"models.{name}.select must be best or last")
    require(isinstance(cfg.get("mixup", 0), (int, float)) and cfg.get("mixup", 0) >= 0,
            f"models.{name}.mixup must be >= 0 (0 turns it off), got {cfg.get('mixup')!r}")
    require(isinstance(cfg.get("max_scale", 0), (int, float)) and 0 <= cfg.get("max_scale", 0) < 1,
            f"models.{name}.max_scale must be in [0, 1) (0 turns it off), got {cfg.get('max_scale')!r}")
    require(isinstance(cfg.get("max_rotation", 0), (int, float)) and 0 <= cfg.get("max_rotation", 0) <= 180,
            f"models.{name}.max_rotation must be in [0, 180] degrees (0 turns it off), got {cfg.get('max_rotation')!r}")


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
    dtype = autocast_dtype(cfg["precision"], device)
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
    }
    return chosen["state"], summary
