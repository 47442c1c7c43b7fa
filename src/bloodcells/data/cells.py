"""Locate the white cell of a smear photograph and cut the square crop that training uses."""
import numpy as np
from PIL import Image

from bloodcells.core.errors import UserError
from bloodcells.data.locator import stain_box
from bloodcells.data.voc import fit_box, largest_box, read_boxes


LOCATORS = ("voc", "stain")
CROP_KEYS = ("locator", "crop", "margin", "crop_side", "edge_cells", "fallback_box_size", "image_size")  # crop.json


def annotated_box(voc_path, width, height, notes=None):
    """The largest VOC 'WBC' box of `voc_path`, fitted to the image; None when there is no usable one.

    An annotation that cannot be read is passed over; a box partly outside the image or with swapped corners is
    clipped and put in order, one wholly outside is passed over. Each such case is appended to `notes` as a line."""
    if voc_path is None or not voc_path.is_file():
        return None
    try:
        boxes = read_boxes(voc_path)
    except UserError as error:
        _note(notes, f"{error} (the cell was located by its stain instead)")
        return None
    fitted = [fit_box(box, width, height) for box in boxes]
    if fitted != boxes:
        _note(notes, f"{voc_path}: WBC box {boxes} lies partly or wholly outside the {width}x{height} image or "
                     f"has swapped corners; used {[box for box in fitted if box]}")
    return largest_box([box for box in fitted if box])


def locate_wbc(pixels, voc_path, fallback_box_size, notes=None, locator="voc"):
    """(box, how): with locator 'voc' the largest VOC 'WBC' box, else (and with 'stain' always) the box of the
    stained nucleus (locator.stain_box), else a fallback_box_size square at the image centre."""
    height, width = pixels.shape[:2]
    if locator == "voc":
        box = annotated_box(voc_path, width, height, notes)
        if box is not None:
            return box, "voc"
    box = stain_box(pixels)
    if box is not None:
        return box, "stain"
    half = fallback_box_size // 2
    return (width // 2 - half, height // 2 - half, width // 2 + half, height // 2 + half), "centre"


def _note(notes, line):
    if notes is not None:
        notes.append(line)


EDGE_CELLS = ("shift", "pad")


def complete_cut_box(box, width, height, touch=2):
    """A box cut short by the photograph's edge, extended past that edge to a square (white cells are round)."""
    xmin, ymin, xmax, ymax = box
    box_width, box_height = xmax - xmin, ymax - ymin
    if box_height < box_width:
        if ymin <= touch:
            ymin = ymax - box_width
        elif ymax >= height - touch:
            ymax = ymin + box_width
    elif box_width < box_height:
        if xmin <= touch:
            xmin = xmax - box_height
        elif xmax >= width - touch:
            xmax = xmin + box_height
    return xmin, ymin, xmax, ymax


def median_colour(image):
    """Per-channel median of an RGB PIL image, truncated to int: numpy's median (the mean of the two middle
    values for an even count), computed from PIL's histogram, about 6x faster on a photograph."""
    count = image.size[0] * image.size[1]
    histogram = np.array(image.histogram()).reshape(3, 256)
    colour = []
    for counts in histogram:
        cumulative = np.cumsum(counts)
        low = int(np.searchsorted(cumulative, (count - 1) // 2, side="right"))
        high = int(np.searchsorted(cumulative, count // 2, side="right"))
        colour.append(int((low + high) / 2))
    return tuple(colour)


def square_crop(image, box, margin, size, edge_cells="shift", side=None):
    """A square around `box` enlarged by `margin` on each side, resized to `size`.

    side: a fixed side in the photograph's pixels instead (margin unused), so every crop shows the
    same area of the slide and a cell's size survives the resize.

    edge_cells 'shift': the square is moved inside the image, so a cell cut by the edge sits off-centre;
    'pad': a cut box is first completed past the edge, the square stays centred on it, and what lies
    outside the photograph is filled with its median colour.
    """
    width, height = image.size
    if edge_cells == "pad":
        box = complete_cut_box(box, width, height)
    xmin, ymin, xmax, ymax = box
    if side is None:
        side = max(xmax - xmin, ymax - ymin) * (1 + 2 * margin)
    if edge_cells == "shift":
        side = min(side, width, height)
    side = int(round(side))
    left = int(round((xmin + xmax) / 2 - side / 2))
    top = int(round((ymin + ymax) / 2 - side / 2))
    if edge_cells == "shift":
        left = min(max(left, 0), width - side)
        top = min(max(top, 0), height - side)
    if 0 <= left and 0 <= top and left + side <= width and top + side <= height:
        crop = image.crop((left, top, left + side, top + side))
    else:
        fill = median_colour(image)
        crop = Image.new("RGB", (side, side), fill)
        crop.paste(image, (-left, -top))
    return crop.resize((size, size), Image.Resampling.BICUBIC)


def cut_crop(image, box, crop):
    """The clean stage's prepared image of a PIL photograph, crop['image_size'] pixels square: the square around
    `box` with crop's margin, side and edge rule, with crop 'centre' the image's centred square, or with crop
    'none' the whole photograph resized. `crop` holds
    the clean parameters of data/clean/crop.json (stored in every model)."""
    if crop["crop"] == "wbc":
        return square_crop(image, box, crop["margin"], crop["image_size"], crop["edge_cells"], crop["crop_side"])
    if crop["crop"] == "centre":  # a single-cell image (PBC): its centred square, no stretching
        side = min(image.size)
        left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image.resize((crop["image_size"],) * 2, Image.Resampling.BICUBIC)
