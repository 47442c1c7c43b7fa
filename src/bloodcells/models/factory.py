"""Model factory: torchvision ResNet and AlexNet, efficientnet-pytorch EfficientNet, with a head for the data's classes."""
import urllib.error
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models

from bloodcells.models import checkpoints
from bloodcells.config.archs import ALEXNET_OPTIONS
from bloodcells.core.errors import UserError

# Smallest input side each family can take (AlexNet's stride-4 stem and three max-pools need 63).
MIN_IMAGE_SIZE = {"resnet": 32, "efficientnet": 32, "alexnet": 63}


def alexnet_options(config):
    """The ALEXNET_OPTIONS keys of a model's Recipe or Checkpoint (None where it does not set them)."""
    return {key: getattr(config, key) for key in ALEXNET_OPTIONS}


def _replace_head(model, name, num_classes):
    if name == "resnet":
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif name == "alexnet":
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def _offline_hint(name):
    return (f"download it on a machine with network into {torch.hub.get_dir()}/checkpoints/, or save the "
            f"state dict to a file and set models.{name}.weights: path/to/file.pt")


def build_model(name, arch, image_size, pretrained=False, weights=None, *, num_classes, feature_pool=None,
                stem_stride=None, batch_norm=None, classes=None, norm="batch"):
    """A model with `num_classes` outputs; ImageNet weights only when asked for. With norm "group" every batch norm
    is a GroupNorm (use_group_norm).

    AlexNet only: feature_pool 1 pools its last feature map to 1x1 instead of 6x6 (see
    pool_alexnet_to_1x1); stem_stride 2 halves its first convolution's stride, so an 80 px crop ends
    in a 3x3 feature map instead of 1x1 (the weights keep their shapes); batch_norm adds a
    BatchNorm2d after each convolution (see add_alexnet_batch_norm).
    """
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
    if name == "alexnet" and stem_stride:
        model.features[0].stride = (stem_stride, stem_stride)
    if name == "alexnet" and feature_pool == 1:
        pool_alexnet_to_1x1(model)
    if name == "alexnet" and batch_norm:
        add_alexnet_batch_norm(model)
    if norm == "group":
        if not use_group_norm(model):
            raise UserError(f"models.{name}.norm: group replaces batch norms, and this {arch} has none; "
                            "set models.alexnet.batch_norm: true")
    if weights:
        load_weights(model, weights, name, classes)
    return model


def fold_alexnet_classifier(weight, channels):
    """First classifier weights for a 6x6-pooled map -> the same layer for a 1x1 map (sum over positions)."""
    return weight.view(weight.shape[0], channels, -1).sum(dim=-1)


def pool_alexnet_to_1x1(model):
    """Pool AlexNet's features to 1x1 and fold its first classifier layer to match (9216 -> 256 inputs).

    Below about 100 px the feature map is already 1x1, and the 6x6 pool only copies it 36 times, so
    the first linear layer sees each feature 36 times. Summing its weights over those 36 copies gives
    the same function with 37M fewer parameters (2.2x faster training at 80 px), and ImageNet weights
    keep their meaning. On larger inputs it becomes a global average pool.
    """
    first = model.classifier[1]
    channels = model.features[-3].out_channels
    folded = nn.Linear(channels, first.out_features)
    with torch.no_grad():
        folded.weight.copy_(fold_alexnet_classifier(first.weight, channels))
        folded.bias.copy_(first.bias)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier[1] = folded


def add_alexnet_batch_norm(model):
    """Put a BatchNorm2d between each of AlexNet's convolutions and its ReLU.

    Each ReLU becomes Sequential(BatchNorm2d, ReLU), so the convolutions keep their state-dict keys
    and ImageNet or local weights still load into them; the batch norms start fresh.
    """
    for index, layer in enumerate(model.features):
        if isinstance(layer, nn.Conv2d):
            model.features[index + 1] = nn.Sequential(nn.BatchNorm2d(layer.out_channels), model.features[index + 1])


def group_count(channels, most=32):
    """The number of groups of a GroupNorm over `channels`: 32 (Wu & He's default), or the largest divisor of the
    channels below it (EfficientNet's 40 channels: 20 groups of 2)."""
    return max(groups for groups in range(1, most + 1) if channels % groups == 0)


def use_group_norm(model):
    """Every BatchNorm2d of `model` replaced by a GroupNorm over the same channels (Wu & He 2018): it normalises each
    image by its own statistics, none learnt from the training laboratory's images (Tsutsui et al. 2023 found it
    the best single change for another laboratory's images). Its weight and bias keep the batch norm's names and
    shapes. Returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, child_name, nn.GroupNorm(group_count(child.num_features), child.num_features,
                                                         eps=child.eps))
                replaced += 1
    return replaced


def use_native_silu(model):
    """Swap efficientnet-pytorch's memory-efficient swish for nn.SiLU: the same function, 15 % faster on the CPU.

    The library's own set_swish(memory_efficient=False) is as fast but rounds differently, and the
    published results were trained with nn.SiLU, so this keeps them reproducible to the last digit.
    """
    for module in model.modules():
        if hasattr(module, "_swish"):
            module._swish = nn.SiLU()


def read_weights(path, name):
    """The state dict of a local weights file, and the classes it was trained on where it is a checkpoint of this
    project (src/train.py, src/pretrain.py) that says so (None for a plain state dict)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"models.{name}.weights: {path} does not exist; give a state-dict file or remove the key")
    try:
        state = checkpoints.read(path)
    except checkpoints.UnsafeCheckpoint:
        raise
    except UserError as error:
        reason = str(error).split("(", 1)[-1].rstrip(")")
        raise UserError(f"models.{name}.weights: cannot read {path} as a PyTorch state dict ({reason})") from None
    if not isinstance(state, dict):
        raise UserError(f"models.{name}.weights: {path} holds a {type(state).__name__}, not a state dict")
    return state.get("state_dict", state), state.get("classes")


def learns_its_own_normalisation(path, name):
    """True for weights trained by this project on standardised crops (a checkpoint that records its channel
    statistics): a model started from them standardises its own data by its own statistics, as they were trained.
    Other weights files (ImageNet's, saved as a state dict) expect ImageNet's statistics."""
    checkpoint = checkpoints.read(path) if path else {}
    return isinstance(checkpoint, dict) and "mean" in checkpoint and "std" in checkpoint


def classification_head(model):
    """The name of the model's last linear layer: the one whose rows are the classes."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1]


def match_head(state, head, trained_on, classes):
    """The state with its classification head's rows in the order of `classes` when it was trained on the same
    classes (names in any letter case) in another order; without the head when it was trained on other classes.
    Returns the state and what was done, or None where the head fits as it is."""
    if trained_on is None or classes is None:
        return state, None
    theirs, ours = [c.lower() for c in trained_on], [c.lower() for c in classes]
    if theirs == ours:
        return state, None
    if sorted(theirs) == sorted(ours):
        order = torch.tensor([theirs.index(c) for c in ours])
        return {**state, **{k: state[k][order] for k in (f"{head}.weight", f"{head}.bias") if k in state}}, \
            "its class rows reordered to " + ", ".join(classes)
    return {k: v for k, v in state.items() if k.rsplit(".", 1)[0] != head}, \
        f"trained on {', '.join(trained_on)}: its classification head is replaced by a new one for {', '.join(classes)}"


def load_weights(model, path, name, classes=None):
    """Load a local state dict or checkpoint; a head of another shape (e.g. ImageNet's 1000 classes) or for other
    classes is left new, a head for the same classes in another order reordered, and either is said."""
    state, trained_on = read_weights(path, name)
    own = model.state_dict()
    head = classification_head(model)
    state, done = match_head(state, head, trained_on, classes)
    key = "classifier.1.weight"  # AlexNet: a stock 6x6-head state dict for a 1x1-pooled model
    if key in state and key in own and state[key].shape[1] == 36 * own[key].shape[1]:
        state = {**state, key: fold_alexnet_classifier(state[key], own[key].shape[1])}
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    added_norms = {k for k, module in model.named_modules()  # AlexNet's batch_norm: not in a stock state dict
                   if name == "alexnet" and isinstance(module, nn.BatchNorm2d) and k + ".weight" not in state}
    missing = [k for k in own if k not in usable and k.rsplit(".", 1)[0] not in added_norms]
    if len(missing) > 4:  # more than a classification head (weight and bias, twice for safety)
        raise UserError(f"models.{name}.weights: {path} does not fit this arch ({len(missing)} tensors missing "
                        f"or of another shape, e.g. {missing[0]}); check models.{name}.arch")
    if done is None and f"{head}.weight" not in usable:
        done = f"its classification head does not fit {own[f'{head}.weight'].shape[0]} classes: a new one is trained"
    if done:
        print(f"models.{name}.weights: {path}: {done}")
    model.load_state_dict(usable, strict=False)
