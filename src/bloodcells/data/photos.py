"""New photographs for predict: find them, locate the white cell, cut the crop the models were trained on."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bloodcells.core.errors import UserError
from bloodcells.data.images import open_rgb
from bloodcells.data.cells import cut_crop
from bloodcells.data.locator import stain_box
from bloodcells.data.voc import fit_box

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")


@dataclass
class Photo:
    path: Path
    box: tuple = None
    located_by: str = ""          # stain (the locator), given (--box / --boxes) or whole (crop: none)
    crop: np.ndarray = None       # the clean stage's square, crop['image_size'] pixels
    image: Image.Image = None     # kept only for overlays
    error: str = ""


def find_images(inputs):
    """(image files, problems): files as given, folders searched recursively for IMAGE_SUFFIXES (hidden files
    skipped), in sorted order. A missing path or a folder without images is a problem line, not an exception."""
    found, problems = [], []
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not files:
                problems.append(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return list(dict.fromkeys(found)), problems


def parse_box(text):
    """'x0,y0,x1,y1' -> a box of ints."""
    try:
        box = tuple(int(round(float(v))) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise UserError(f"--box must be four pixel numbers x0,y0,x1,y1 (left, top, right, bottom), got {text!r}")
    return box


def read_boxes_csv(path):
    """{image name: box} from a CSV with columns image, xmin, ymin, xmax, ymax (such as data/clean/test.csv);
    image is the file name without its suffix."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"--boxes {path}: cannot read it as a CSV file ({error})") from None
    columns = ["image", "xmin", "ymin", "xmax", "ymax"]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"--boxes {path}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    return {str(row.image): (int(row.xmin), int(row.ymin), int(row.xmax), int(row.ymax))
            for row in frame[columns].itertuples(index=False)}


def prepare_photo(path, crop, box=None, keep_image=False):
    """Open, locate (unless `box` is given) and cut one photograph; a problem is recorded in Photo.error."""
    photo = Photo(Path(path))
    try:
        image = open_rgb(path)
    except UserError as error:
        photo.error = str(error)
        return photo
    if crop["crop"] in ("none", "centre"):
        photo.box, photo.located_by = (0, 0, *image.size), "whole"
    elif box is not None:
        photo.box, photo.located_by = fit_box(box, *image.size), "given"
        if photo.box is None:
            photo.error = f"{path}: the given box {box} lies outside the {image.size[0]}x{image.size[1]} image"
            return photo
    else:
        photo.box, photo.located_by = stain_box(np.asarray(image)), "stain"
        if photo.box is None:
            photo.error = (f"{path}: no white cell found (no violet-stained nucleus); if there is one, give its box "
                           "with --box x0,y0,x1,y1")
            return photo
    photo.crop = np.asarray(cut_crop(image, photo.box, crop))
    photo.image = image if keep_image else None
    return photo
