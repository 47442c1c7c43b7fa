"""Locate the white cell of a smear photograph and cut the square crop that training uses."""
import numpy as np
from PIL import Image

from .voc import largest_box, read_boxes


def nucleus_box(pixels, box_size, min_pixels=200):
    """Fallback locator: a box around the violet-stained nucleus (blue - green > 60, red < 150)."""
    rgb = pixels.astype(np.int16)
    mask = (rgb[..., 2] - rgb[..., 1] > 60) & (rgb[..., 0] < 150)
    if mask.sum() < min_pixels:
        return None
    ys, xs = np.nonzero(mask)
    cx, cy, half = int(np.median(xs)), int(np.median(ys)), box_size // 2
    return (cx - half, cy - half, cx + half, cy + half)


def locate_wbc(pixels, voc_path, fallback_box_size):
    """(box, how): the largest VOC 'WBC' box, else the stained nucleus, else the image centre."""
    if voc_path is not None and voc_path.is_file():
        box = largest_box(read_boxes(voc_path))
        if box is not None:
            return box, "voc"
    box = nucleus_box(pixels, fallback_box_size)
    if box is not None:
        return box, "nucleus"
    height, width = pixels.shape[:2]
    half = fallback_box_size // 2
    return (width // 2 - half, height // 2 - half, width // 2 + half, height // 2 + half), "centre"


def square_crop(image, box, margin, size):
    """A square around `box` enlarged by `margin` on each side, kept inside the image, resized."""
    width, height = image.size
    xmin, ymin, xmax, ymax = box
    side = max(xmax - xmin, ymax - ymin) * (1 + 2 * margin)
    side = int(round(min(side, width, height)))
    left = int(round((xmin + xmax) / 2 - side / 2))
    top = int(round((ymin + ymax) / 2 - side / 2))
    left = min(max(left, 0), width - side)
    top = min(max(top, 0), height - side)
    crop = image.crop((left, top, left + side, top + side))
    return crop.resize((size, size), Image.Resampling.BICUBIC)
