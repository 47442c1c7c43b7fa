"""Open any photograph PIL reads as 8-bit RGB: grayscale, palette, RGBA, CMYK and 16-bit images are converted."""
import numpy as np
from PIL import Image

from bloodcells.core.errors import UserError

WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16-bit, 32-bit integer and float grayscale


def open_rgb(path, notes=None):
    """The image at `path` as 8-bit RGB. A conversion is appended to `notes` as one line; an unreadable file is a
    UserError naming it."""
    try:
        with Image.open(path) as opened:
            opened.load()
            mode = opened.mode
            image = to_8bit(opened) if mode in WIDE_MODES else opened
            rgb = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(f"{path}: cannot read image ({error})") from None
    if mode != "RGB" and notes is not None:
        notes.append(f"{path}: {mode} image converted to 8-bit RGB")
    return rgb


def to_8bit(image):
    """A wide grayscale image scaled to 0-255 by its type's range (16-bit: /257), not clipped at 255."""
    values = np.asarray(image, dtype=np.float64)
    top = 1.0 if image.mode == "F" and values.max() <= 1.0 else (65535.0 if values.max() > 255 else 255.0)
    return Image.fromarray(np.clip(np.rint(values * 255.0 / top), 0, 255).astype(np.uint8), "L")
