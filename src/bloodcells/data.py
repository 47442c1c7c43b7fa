"""Prepared crops in memory as one uint8 tensor, and the augmentations that fit smear images."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from . import classes as class_list
from .errors import UserError

CLEAN_DIR = Path("data/clean")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def read_split(split, clean_dir=CLEAN_DIR, classes=None):
    """The rows of data/clean/<split>.csv; every label must be one of `classes` (default: data/clean/classes.json)."""
    classes = classes or class_list.read(clean_dir)
    path = Path(clean_dir) / f"{split}.csv"
    if not path.is_file():
        raise UserError(f"{path} not found; run the clean stage first (dvc repro clean)")
    frame = pd.read_csv(path)
    if not {"image", "label"} <= set(frame.columns):
        raise UserError(f"{path} lacks the image/label columns; it is from an older clean stage: dvc repro clean")
    unknown = set(frame["label"]) - set(classes)
    if unknown:
        raise UserError(f"{path} has unknown label(s) {sorted(unknown)}; re-run the clean stage (dvc repro clean)")
    return frame


def read_crop_settings(clean_dir=CLEAN_DIR):
    """How the clean stage cut the crops (data/clean/crop.json): stored in each model for predict."""
    path = Path(clean_dir) / "crop.json"
    if not path.is_file():
        raise UserError(f"{path} not found; it is from an older clean stage: dvc repro clean")
    return json.loads(path.read_text())


def load_split(split, clean_dir=CLEAN_DIR, require_all_classes=True):
    """(images uint8 [N, 3, H, W], labels int64 [N] as indices of data/clean/classes.json, image names); each
    file is decoded once."""
    classes = class_list.read(clean_dir)
    frame = read_split(split, clean_dir, classes)
    missing = [c for c in classes if c not in set(frame["label"])]
    if require_all_classes and missing:
        raise UserError(f"{Path(clean_dir) / split}.csv has no {', '.join(missing)} images; it is from an older or "
                        "different clean stage: re-run it (dvc repro clean)")
    decoded = {}
    for name in frame["image"].unique():
        path = Path(clean_dir) / "images" / f"{name}.png"
        if not path.is_file():
            raise UserError(f"{path} is missing; re-run the clean stage (dvc repro -f clean)")
        decoded[name] = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)
    images = torch.stack([decoded[name] for name in frame["image"]])
    position = class_list.index(classes)
    labels = torch.tensor([position[label] for label in frame["label"]], dtype=torch.int64)
    return images, labels, list(frame["image"])


def channel_stats(images):
    """Per-channel mean and standard deviation of uint8 images, on the 0-1 scale."""
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255
    return pixels.mean(dim=1).tolist(), pixels.std(dim=1).tolist()


def normalise(batch, mean, std):
    batch = batch.float() / 255
    return (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def resize(images, size):
    if images.shape[-1] == size:
        return images
    resized = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8)


def dihedral(batch, view):
    """One of the 8 symmetries of the square: `view` % 4 quarter turns, mirrored when `view` >= 4."""
    batch = torch.rot90(batch, view % 4, dims=(-2, -1))
    return batch.flip(-1) if view >= 4 else batch


def augment(batch, generator, colour_jitter=0.1, max_shift=0.0, max_scale=0.0, max_rotation=0.0):
    """Random dihedral view, mild brightness/contrast/saturation jitter, a small shift, and with
    `max_scale` / `max_rotation` (degrees) a random zoom and turn about the centre, per image.

    `batch` is float in [0, 1]; every random number comes from `generator`, so runs repeat exactly.
    """
    n = batch.shape[0]
    views = torch.randint(0, 8, (n,), generator=generator)
    out = torch.empty_like(batch)
    for view in range(8):
        chosen = views == view
        if chosen.any():
            out[chosen] = dihedral(batch[chosen], view)
    if colour_jitter > 0:
        factors = 1 + (torch.rand((3, n, 1, 1, 1), generator=generator) * 2 - 1) * colour_jitter
        brightness, contrast, saturation = factors
        out = out * brightness
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * contrast + mean
        grey = out.mean(dim=1, keepdim=True)
        out = (out - grey) * saturation + grey
    if max_shift > 0:
        limit = int(round(max_shift * batch.shape[-1]))
        shifts = torch.randint(-limit, limit + 1, (n, 2), generator=generator)
        out = torch.stack([torch.roll(image, (int(dy), int(dx)), dims=(-2, -1))
                           for image, (dy, dx) in zip(out, shifts)])
    if max_scale > 0 or max_rotation > 0:
        out = zoom_and_turn(out, generator, max_scale, max_rotation)
    return out.clamp(0, 1)


def zoom_and_turn(batch, generator, max_scale, max_rotation):
    """Zoom each image by 1 +- max_scale and turn it by +- max_rotation degrees."""
    n = batch.shape[0]
    scales = 1 + (torch.rand(n, generator=generator) * 2 - 1) * max_scale
    degrees = (torch.rand(n, generator=generator) * 2 - 1) * max_rotation
    return affine(batch, scales, degrees)


def affine(batch, scales, degrees):
    """Image i zoomed by scales[i] and turned by degrees[i] about its centre, as torch.rot90 turns (edges mirrored in)."""
    angle = torch.deg2rad(torch.as_tensor(degrees, dtype=torch.float32))
    cos, sin = torch.cos(angle) / scales, torch.sin(angle) / scales
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(batch.shape), align_corners=False)
    return torch.nn.functional.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
