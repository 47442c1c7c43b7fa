"""A picture of one prediction: the photograph with the located cell, the crop, where the model looked
(Grad-CAM through captum) and the four class probabilities."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from bloodcells.core.atomic import save_figure
from bloodcells.data.dataset import normalise

MIN_MAP_SIDE = 6  # the last convolutions see a 3x3 map at these input sizes: too coarse to show anything


def cam_layer(model, side):
    """The deepest Conv2d whose output map is at least MIN_MAP_SIDE pixels across for a side x side input."""
    sides, hooks = {}, []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(
                lambda layer, args, output: sides.__setitem__(layer, output.shape[-1])))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side))
    finally:
        for hook in hooks:
            hook.remove()
    wide = [layer for layer, width in sides.items() if width >= MIN_MAP_SIDE]
    return wide[-1] if wide else list(sides)[-1]


def class_activation(model, images, mean, std, targets):
    """Grad-CAM heat maps [N, S, S] in 0-1 of uint8 model inputs [N, 3, S, S] for the `targets` classes."""
    side = images.shape[-1]
    grad_cam = LayerGradCam(model.eval(), cam_layer(model, side))
    inputs = normalise(images, mean, std).requires_grad_(True)
    maps = grad_cam.attribute(inputs, target=[int(t) for t in targets], relu_attributions=True)
    maps = LayerAttribution.interpolate(maps.detach(), (side, side), interpolate_mode="bilinear")[:, 0]
    peak = maps.flatten(1).max(dim=1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (maps / peak).clamp(0, 1)


def draw_overlay(path, photo, probabilities, heat, model_label, classes):
    """Write the picture of `photo` (a photos.Photo with its image) to `path` (PNG, atomically)."""
    predicted = int(probabilities.argmax())
    figure, axes = plt.subplots(1, 4, figsize=(13, 3.3), gridspec_kw={"width_ratios": [1.45, 1, 1, 1.2]})
    axes[0].imshow(photo.image)
    x0, y0, x1, y1 = photo.box
    axes[0].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=2))
    axes[0].set_title(f"{photo.path.name} (cell: {photo.located_by})", fontsize=9)
    axes[1].imshow(photo.crop)
    axes[1].set_title("crop the model sees", fontsize=9)
    axes[2].imshow(photo.crop)
    axes[2].imshow(heat, cmap="jet", alpha=0.45, extent=(-0.5, photo.crop.shape[1] - 0.5, photo.crop.shape[0] - 0.5, -0.5))
    axes[2].set_title(f"Grad-CAM: where {classes[predicted].lower()} was seen", fontsize=9)
    for ax in axes[:3]:
        ax.axis("off")
    colours = ["tab:blue" if i == predicted else "lightgray" for i in range(len(classes))]
    axes[3].barh(range(len(classes)), probabilities, color=colours)
    axes[3].set_yticks(range(len(classes)), [c.capitalize() for c in classes], fontsize=9)
    axes[3].invert_yaxis()
    axes[3].set_xlim(0, 1)
    for i, p in enumerate(probabilities):
        axes[3].text(min(float(p) + 0.02, 0.82), i, f"{float(p):.2f}", va="center", fontsize=9)
    axes[3].set_title("probability", fontsize=9)
    figure.suptitle(f"{classes[predicted]} {float(probabilities[predicted]):.2f}  ({model_label})", fontsize=11)
    figure.tight_layout()
    save_figure(figure, path)
    plt.close(figure)
