"""Model factory: torchvision ResNet and AlexNet, efficientnet-pytorch EfficientNet, with a 4-class head."""
import urllib.error
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models

from .classes import CLASSES
from .errors import UserError

ARCHS = {
    "resnet": ("resnet18", "resnet34", "resnet50"),
    "efficientnet": ("efficientnet-b0", "efficientnet-b1", "efficientnet-b2", "efficientnet-b3"),
    "alexnet": ("alexnet",),
}
# Smallest input side each family can take (AlexNet's stride-4 stem and three max-pools need 63).
MIN_IMAGE_SIZE = {"resnet": 32, "efficientnet": 32, "alexnet": 63}


def check_arch(name, arch):
    if name not in ARCHS:
        raise UserError(f"unknown model {name!r}; use one of {', '.join(ARCHS)}")
    if arch not in ARCHS[name]:
        raise UserError(f"models.{name}.arch: unknown arch {arch!r}; use one of {', '.join(ARCHS[name])}")


def _replace_head(model, name, num_classes):
    if name == "resnet":
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif name == "alexnet":
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def _offline_hint(name):
    return (f"download it on a machine with network into {torch.hub.get_dir()}/checkpoints/, or save the "
            f"state dict to a file and set models.{name}.weights: path/to/file.pt")


def build_model(name, arch, image_size, pretrained=False, weights=None, num_classes=len(CLASSES)):
    """A model with `num_classes` outputs; ImageNet weights only when asked for."""
    check_arch(name, arch)
    if image_size < MIN_IMAGE_SIZE[name]:
        raise UserError(f"models.{name}.image_size {image_size} is too small for {arch}; "
                        f"use at least {MIN_IMAGE_SIZE[name]}")
    try:
        if name == "efficientnet":
            from efficientnet_pytorch import EfficientNet

            if pretrained:
                model = EfficientNet.from_pretrained(arch, num_classes=num_classes)
            else:
                # PyTorch's usual BN momentum (0.1): the TF default (0.01) leaves the running
                # statistics unsettled after a short from-scratch run, and eval-mode accuracy collapses.
                model = EfficientNet.from_name(arch, num_classes=num_classes, image_size=image_size,
                                               batch_norm_momentum=0.9)
        elif pretrained:
            enum = tv_models.get_model_weights(arch).DEFAULT
            model = _replace_head(tv_models.get_model(arch, weights=enum), name, num_classes)
        else:
            model = tv_models.get_model(arch, weights=None, num_classes=num_classes)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        raise UserError(f"cannot download the ImageNet weights of {arch} ({getattr(error, 'reason', error)}); "
                        + _offline_hint(name))
    if name == "efficientnet":
        use_native_silu(model)
    if weights:
        load_weights(model, weights, name)
    return model


def use_native_silu(model):
    """Swap efficientnet-pytorch's memory-efficient swish for nn.SiLU: the same function, 15 % faster on the CPU.

    The library's own set_swish(memory_efficient=False) is as fast but rounds differently, and the
    published results were trained with nn.SiLU, so this keeps them reproducible to the last digit.
    """
    for module in model.modules():
        if hasattr(module, "_swish"):
            module._swish = nn.SiLU()


def load_weights(model, path, name):
    """Load a local state dict; a head of another shape (e.g. ImageNet's 1000 classes) is left new."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"models.{name}.weights: {path} does not exist; give a state-dict file or remove the key")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise UserError(f"models.{name}.weights: cannot read {path} as a PyTorch state dict ({error})")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if len(missing) > 4:  # more than a classification head (weight and bias, twice for safety)
        raise UserError(f"models.{name}.weights: {path} does not fit this arch ({len(missing)} tensors missing "
                        f"or of another shape, e.g. {missing[0]}); check models.{name}.arch")
    model.load_state_dict(usable, strict=False)
