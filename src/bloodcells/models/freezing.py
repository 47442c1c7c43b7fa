"""Fine-tuning with the leading layers kept as loaded (`finetune.frozen_share`)."""
from torch import nn

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def layers_with_parameters(model):
    """The modules that hold parameters of their own, in the order the model declares them (its forward order
    for ResNet, EfficientNet and AlexNet: a block's convolutions, then its shortcut)."""
    return [module for module in model.modules() if next(module.parameters(recurse=False), None) is not None]


def freeze_leading_layers(model, share):
    """Stop training the first `share` of the model's weight layers (convolutions and fully-connected layers)
    and the normalisation layers that follow each; return (frozen, total) weight layers.

    The classifier, the last weight layer, always trains (share < 1). The frozen layers' batch-norm running
    statistics still follow the new images in training mode, which adapts them to another stain's colours
    without changing what they learnt.
    """
    layers = layers_with_parameters(model)
    total = sum(isinstance(layer, WEIGHT_LAYERS) for layer in layers)
    frozen = int(share * total)  # share < 1: never the classifier
    seen = 0
    for layer in layers:
        if isinstance(layer, WEIGHT_LAYERS):
            if seen == frozen:
                break
            seen += 1
        layer.requires_grad_(False)
    return frozen, total
