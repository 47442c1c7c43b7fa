"""Prepared crops held as uint8 at the working size (a Dataset, and the batches an epoch draws from it), and the
augmentations that fit smear images."""
import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from skimage import color as skimage_colour
from tqdm import tqdm

from bloodcells.data import classes as class_list
from bloodcells.core.errors import UserError

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


def load_split(split, clean_dir=CLEAN_DIR, require_all_classes=True, size=None):
    """(images uint8 [N, 3, S, S], labels int64 [N] as indices of data/clean/classes.json, image names); each
    file is decoded once and, with `size`, brought to that side as it is read, so a split is never held larger
    than it is used (8,000 crops at 64 px take 100 MB)."""
    classes = class_list.read(clean_dir)
    frame = read_split(split, clean_dir, classes)
    missing = [c for c in classes if c not in set(frame["label"])]
    if require_all_classes and missing:
        raise UserError(f"{Path(clean_dir) / split}.csv has no {', '.join(missing)} images; it is from an older or "
                        "different clean stage: re-run it (dvc repro clean)")
    decoded = {}
    for name in tqdm(frame["image"].unique(), desc=f"read {split} crops", unit="img", disable=None, leave=False):
        path = Path(clean_dir) / "images" / f"{name}.png"
        if not path.is_file():
            raise UserError(f"{path} is missing; re-run the clean stage (dvc repro -f clean)")
        image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)
        decoded[name] = resize(image[None], size)[0] if size else image
    images = torch.stack([decoded[name] for name in frame["image"]])
    position = class_list.index(classes)
    labels = torch.tensor([position[label] for label in frame["label"]], dtype=torch.int64)
    return images, labels, list(frame["image"])


class CropDataset(torch.utils.data.Dataset):
    """One split of data/clean at the training side `size`: item i is (uint8 image [3, size, size], class index).
    The crops are decoded once into memory: 3 * size**2 bytes each, so even PBC's 17,092 crops at 80 px take
    330 MB, and reading them from memory leaves no work for DataLoader workers on a 2-core CPU."""

    def __init__(self, split, size, clean_dir=CLEAN_DIR, require_all_classes=True):
        self.classes = class_list.read(clean_dir)
        self.images, self.labels, self.names = load_split(split, clean_dir, require_all_classes, size)

    @classmethod
    def from_tensors(cls, images, labels, names, classes, size):
        """Crops read elsewhere (another dataset, src/pretrain.py), brought to the training side `size`."""
        dataset = cls.__new__(cls)
        dataset.images, dataset.labels, dataset.names, dataset.classes = resize(images, size), labels, names, classes
        return dataset

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def __getitems__(self, indices):
        """A whole batch (images, labels) in one indexing, where the crops are held: DataLoader's batched fetch."""
        index = torch.as_tensor(indices, device=self.images.device)
        return self.images[index], self.labels[index]

    def to(self, device):
        """The crops held on `device`: on a GPU, batches are then drawn and augmented there, none copied per step
        (PBC's 7,376 training crops at 64 px take 91 MB)."""
        self.images, self.labels = self.images.to(device), self.labels.to(device)
        return self


class ShuffledBatches(torch.utils.data.Sampler):
    """Each epoch a new order drawn from `generator`, cut into batches of `batch_size` (the last one shorter): the
    generator also draws the augmentations, so one seed repeats a run exactly."""

    def __init__(self, count, batch_size, generator):
        self.count, self.batch_size, self.generator = count, batch_size, generator

    def __iter__(self):
        order = torch.randperm(self.count, generator=self.generator)
        for start in range(0, self.count, self.batch_size):
            yield order[start:start + self.batch_size].tolist()

    def __len__(self):
        return math.ceil(self.count / self.batch_size)


def training_batches(dataset, batch_size, generator, seed=0):
    """A DataLoader over `dataset` in ShuffledBatches; batches are augmented where they are used (training.py),
    with the same generator. The loader draws a seed for its workers each epoch: from a generator of its own,
    since from torch's global one it would move every dropout mask of the model. A dataset that fetches a batch
    at once (CropDataset.__getitems__) hands it over as it is, on its own device."""
    batched = getattr(dataset, "__getitems__", None) is not None
    return torch.utils.data.DataLoader(dataset, batch_sampler=ShuffledBatches(len(dataset), batch_size, generator),
                                       generator=torch.Generator().manual_seed(seed),
                                       collate_fn=fetched_batch if batched else None)


def fetched_batch(batch):
    return batch


def channel_stats(images):
    """Per-channel mean and standard deviation of uint8 images, on the 0-1 scale. All channels in one float64 tensor
    (8 bytes a pixel while it runs: 0.7 GB for 7,400 crops at 64 px): a channel at a time splits the sum over the
    threads differently and moves the last bit of the mean, and with it every checkpoint's hash."""
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255
    return pixels.mean(dim=1).tolist(), pixels.std(dim=1).tolist()


def normalise(batch, mean, std):
    batch = batch.float() / 255  # a new tensor: the rest works in place on it
    mean, std = (torch.tensor(values, device=batch.device).view(1, 3, 1, 1) for values in (mean, std))
    return batch.sub_(mean).div_(std)


def resize(images, size, chunk=256):
    """uint8 images [N, 3, H, W] at size x size, `chunk` images at a time (never the whole set in float)."""
    if images.shape[-1] == size:
        return images
    resized = [torch.nn.functional.interpolate(part.float(), size=(size, size), mode="bilinear", antialias=True)
               .round().clamp(0, 255).to(torch.uint8) for part in images.split(chunk)]
    return torch.cat(resized)


def dihedral(batch, view):
    """One of the 8 symmetries of the square: `view` % 4 quarter turns, mirrored when `view` >= 4."""
    batch = torch.rot90(batch, view % 4, dims=(-2, -1))
    return batch.flip(-1) if view >= 4 else batch


def augment(batch, generator, colour_jitter=0.1, max_shift=0.0, max_scale=0.0, max_rotation=0.0, stain_jitter=0.0,
            blur=0.0):
    """Random dihedral view, mild brightness/contrast/saturation jitter, a small shift, and with
    `max_scale` / `max_rotation` (degrees) a random zoom and turn about the centre, per image. With `stain_jitter`
    the stains are jittered (stain_jittered), with `blur` each image is blurred by a Gaussian of sigma U(0, blur) px.

    `batch` is float in [0, 1] (square images), on any device: the pixels are worked where they are, while every
    random number is drawn on the CPU from `generator`, so runs repeat exactly and a GPU run draws what a CPU run
    draws. The views and the shift are one gather each and the jitter works in place: the values are those of
    torch.rot90 / flip / roll and out-of-place arithmetic, bit for bit, at half the time of a loop over images.
    """
    n, side, device = batch.shape[0], batch.shape[-1], batch.device
    views = torch.randint(0, 8, (n,), generator=generator)
    out = gather_pixels(batch, dihedral_index(side)[views].to(device))
    if stain_jitter > 0:
        out = stain_jittered(out, generator, stain_jitter)
    if colour_jitter > 0:
        factors = 1 + (torch.rand((3, n, 1, 1, 1), generator=generator) * 2 - 1) * colour_jitter
        brightness, contrast, saturation = factors.to(device)
        out.mul_(brightness)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out.sub_(mean).mul_(contrast).add_(mean)
        grey = out.mean(dim=1, keepdim=True)
        out.sub_(grey).mul_(saturation).add_(grey)
    if max_shift > 0:
        limit = int(round(max_shift * side))
        shifts = torch.randint(-limit, limit + 1, (n, 2), generator=generator)
        out = gather_pixels(out, roll_index(side, shifts).to(device))
    if max_scale > 0 or max_rotation > 0:
        out = zoom_and_turn(out, generator, max_scale, max_rotation)
    if blur > 0:
        out = gaussian_blur(out, torch.rand(n, generator=generator) * blur, radius=math.ceil(3 * blur))
    return out.clamp_(0, 1)


# scikit-image's haematoxylin-eosin-DAB decomposition (Ruifrok & Johnston 2001), the matrices of rgb2hed / hed2rgb
HED_FROM_RGB = torch.tensor(skimage_colour.hed_from_rgb, dtype=torch.float32)
RGB_FROM_HED = torch.tensor(skimage_colour.rgb_from_hed, dtype=torch.float32)


def stain_jittered(batch, generator, strength):
    """Each image's haematoxylin, eosin and DAB amounts scaled by 1 + U(-strength, strength) and shifted by
    U(-strength, strength), in optical density (-ln of the 0-1 intensity): Tellez et al. 2018's HED augmentation,
    a stain of another laboratory's hue and strength. rgb2hed's clipping of negative amounts is left out, so that
    no jitter gives back the image."""
    n = batch.shape[0]
    change, shift = ((torch.rand((2, n, 3, 1, 1), generator=generator) * 2 - 1) * strength).to(batch.device)
    stains = stain_amounts(batch) * (1 + change) + shift
    return torch.exp(-torch.einsum("ndhw,dc->nchw", stains, RGB_FROM_HED.to(batch.device)))


def stain_amounts(batch):
    """[n, 3 (haematoxylin, eosin, DAB), h, w] in optical density, of images in [0, 1]."""
    density = -batch.clamp_min(1e-6).log()
    return torch.einsum("nchw,cd->ndhw", density, HED_FROM_RGB.to(batch.device))


def gaussian_blur(batch, sigmas, radius):
    """Image i blurred by a Gaussian of sigma sigmas[i] px (0: unchanged), a (2 radius + 1)-tap kernel in each
    direction, the edges mirrored as torchvision's gaussian_blur mirrors them."""
    n, channels, height, width = batch.shape
    taps = torch.arange(-radius, radius + 1, dtype=batch.dtype)
    kernels = torch.exp(-taps ** 2 / (2 * sigmas.clamp_min(1e-3)[:, None] ** 2))
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(channels, 0).to(batch.device)
    flat = torch.nn.functional.pad(batch.reshape(1, n * channels, height, width), (radius,) * 4, mode="reflect")
    flat = torch.nn.functional.conv2d(flat, kernels[:, None, None, :], groups=n * channels)
    flat = torch.nn.functional.conv2d(flat, kernels[:, None, :, None], groups=n * channels)
    return flat.view(n, channels, height, width)


@functools.cache
def dihedral_index(side):
    """[8, side * side]: for each view, where each of its pixels comes from in the flattened image."""
    grid = torch.arange(side * side).view(side, side)
    return torch.stack([dihedral(grid, view).flatten() for view in range(8)])


def roll_index(side, shifts):
    """[n, side * side]: the source pixels of torch.roll(image, (dy, dx)) for each row (dy, dx) of `shifts`."""
    steps = torch.arange(side)
    rows = (steps - shifts[:, :1]) % side
    columns = (steps - shifts[:, 1:]) % side
    return (rows[:, :, None] * side + columns[:, None, :]).flatten(1)


def gather_pixels(batch, index):
    """Image i's pixels rearranged by index[i] (source positions in the flattened image), every channel alike."""
    flat = batch.flatten(2)
    return flat.gather(2, index[:, None, :].expand(-1, flat.shape[1], -1)).view(batch.shape)


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
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1).to(batch.device)
    grid = torch.nn.functional.affine_grid(theta, list(batch.shape), align_corners=False)
    return torch.nn.functional.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
