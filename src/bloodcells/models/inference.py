"""Inference shared by the evaluate stage and predict: load a checkpoint, bring prepared crops to the model's
input size, and compute class probabilities with or without test-time augmentation."""

import numpy as np
import torch

from bloodcells.models import checkpoints
from bloodcells.models.calibration import MODES, apply_temperature, fit_temperature, temperature_for
from bloodcells.data.dataset import dihedral, normalise, resize
from bloodcells.core.errors import UserError
from bloodcells.models.factory import alexnet_options, build_model

CHANNELS_LAST = torch.channels_last  # faster convolutions on CPU (measured: up to 1.6x for EfficientNet)


def load_checkpoint(path, name=None, classes=None):
    """(model in eval mode, its Checkpoint) from a models/<name>.pt file of this project, checked as
    checkpoints.load checks it; every problem is a UserError naming the file."""
    checkpoint = checkpoints.load(path, name, classes)
    model = build_model(checkpoint.model, checkpoint.arch, checkpoint.image_size, num_classes=len(checkpoint.classes),
                        norm=checkpoint.norm or "batch",
                        **alexnet_options(checkpoint))
    try:
        model.load_state_dict(checkpoint.state_dict)
    except (RuntimeError, TypeError, AttributeError) as error:
        retrain = f"retrain it (dvc repro -f train_{name})" if name else "use a models/<name>.pt file of this project"
        raise UserError(f"{path}: its weights do not fit {checkpoint.arch} ({str(error).splitlines()[0]}); "
                        f"{retrain}") from None
    return model.to(memory_format=CHANNELS_LAST).eval(), checkpoint  # as its inputs: 1.3-2x faster on CPU


def model_inputs(prepared, checkpoint):
    """Prepared images (uint8 tensor [N, 3, S, S] or a list of [S, S, 3] arrays) at the model's input size."""
    if not torch.is_tensor(prepared):
        prepared = torch.from_numpy(np.stack(prepared)).permute(0, 3, 1, 2)
    return resize(prepared, checkpoint.image_size)


@torch.no_grad()
def predict_probabilities(model, images, mean, std, batch_size=64, tta=False, device="cpu", dtype=None):
    """Class probabilities for uint8 images; with `tta`, averaged over the 8 dihedral views."""
    model.eval()
    device = torch.device(device)
    views = range(8) if tta else (0,)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = normalise(images[start:start + batch_size], mean, std).to(device, memory_format=CHANNELS_LAST)
        total = 0
        for view in views:
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                total = total + model(dihedral(batch, view)).float().softmax(dim=1)
        outputs.append((total / len(views)).cpu())
    return torch.cat(outputs)


def calibrate(probabilities, checkpoint, tta):
    """The probabilities with the model's temperature for that way of running (bloodcells.models.calibration); a model
    trained before calibration keeps its own."""
    return torch.from_numpy(apply_temperature(probabilities.numpy(), temperature_for(checkpoint.temperature, tta)))


def fit_temperatures(model, images, labels, mean, std, batch_size=64, device="cpu"):
    """{single_view: T, tta: T}: the model's temperature for each way it is run, fitted on uint8 `images` at its
    input size with their `labels` (the validation split: never the test split), in fp32 as evaluate runs it."""
    return {mode: fit_temperature(predict_probabilities(model, images, mean, std, batch_size, tta=mode == "tta",
                                                        device=device).numpy(), labels.numpy())
            for mode in MODES}


def save_checkpoint(path, model, cfg, classes, mean, std, crop, made_on, **extra):
    """Weights and what inference needs (with how the clean stage cut the crops, for predict), nothing that varies
    from run to run (the wall-clock summary lives in metrics/train/<model>/metrics.json), so the same inputs give a
    byte-identical file and DVC hash. `made_on` is the same on the same machine."""
    checkpoints.save(path, checkpoints.Checkpoint(
        state_dict=model.state_dict(), model=cfg.name, arch=cfg.arch, classes=list(classes),
        image_size=cfg.image_size, **alexnet_options(cfg), mean=mean, std=std, crop=crop, machine=made_on,
        norm=None if cfg.norm == "batch" else cfg.norm, **extra))
