"""A procedurally generated, offline stand-in for the BCCD data, in the same layout.

Each image is a pink smear with red cells and one white cell whose nucleus and cytoplasm
follow the textbook morphology of its class, so that a small CNN can learn it.
"""
import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bloodcells.data.cleaning import BCCD_CLASSES as CLASSES  # the synthetic smears stand in for BCCD
from bloodcells.data.voc import write_voc

NUCLEUS = (88, 38, 128)
CYTOPLASM = {
    "NEUTROPHIL": (226, 192, 214),
    "EOSINOPHIL": (236, 158, 128),
    "LYMPHOCYTE": (172, 184, 232),
    "MONOCYTE": (192, 182, 214),
}
CELL_RADIUS = {"NEUTROPHIL": 46, "EOSINOPHIL": 48, "LYMPHOCYTE": 34, "MONOCYTE": 56}


def _ellipse(draw, cx, cy, rx, ry, fill):
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)


def _jitter(rng, colour, amount=12):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _draw_white_cell(draw, rng, label, cx, cy, radius):
    _ellipse(draw, cx, cy, radius, radius * rng.uniform(0.9, 1.0), _jitter(rng, CYTOPLASM[label]))
    nucleus = _jitter(rng, NUCLEUS, 15)
    angle = rng.uniform(0, 2 * math.pi)
    along = (math.cos(angle), math.sin(angle))
    if label == "NEUTROPHIL":  # three to five small lobes on a curved chain
        lobes = int(rng.integers(3, 6))
        points = []
        for k in range(lobes):
            t = (k - (lobes - 1) / 2) * 0.42 * radius
            bend = 0.25 * radius * math.cos(k * 1.3)
            points.append((cx + t * along[0] - bend * along[1], cy + t * along[1] + bend * along[0]))
        draw.line(points, fill=nucleus, width=max(2, int(radius * 0.08)))
        for px, py in points:
            _ellipse(draw, px, py, radius * 0.2, radius * 0.17, nucleus)
    elif label == "EOSINOPHIL":  # orange granules, then two lobes
        for _ in range(int(radius * 3)):
            r, a = radius * math.sqrt(rng.uniform(0, 0.85)), rng.uniform(0, 2 * math.pi)
            _ellipse(draw, cx + r * math.cos(a), cy + r * math.sin(a), radius * 0.05, radius * 0.05,
                     _jitter(rng, (238, 110, 50), 10))
        for sign in (-1, 1):
            _ellipse(draw, cx + sign * 0.32 * radius * along[0], cy + sign * 0.32 * radius * along[1],
                     radius * 0.3, radius * 0.26, nucleus)
    elif label == "LYMPHOCYTE":  # a large round nucleus with a thin rim
        _ellipse(draw, cx + radius * 0.08 * along[0], cy + radius * 0.08 * along[1],
                 radius * 0.8, radius * 0.78, nucleus)
    else:  # MONOCYTE: kidney-shaped nucleus, ample cytoplasm
        _ellipse(draw, cx, cy, radius * 0.58, radius * 0.5, nucleus)
        bite = (cx + radius * 0.5 * along[0], cy + radius * 0.5 * along[1])
        _ellipse(draw, bite[0], bite[1], radius * 0.3, radius * 0.3, _jitter(rng, CYTOPLASM[label], 4))


def make_image(rng, label, width, height):
    """One synthetic smear; returns the image and the white cell's box (xmin, ymin, xmax, ymax)."""
    scale = min(width, height) / 480
    image = Image.new("RGB", (width, height), _jitter(rng, (236, 204, 214), 6))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(18, 30))):
        x, y, r = rng.uniform(0, width), rng.uniform(0, height), 30 * scale * rng.uniform(0.85, 1.15)
        _ellipse(draw, x, y, r, r * rng.uniform(0.85, 1.0), _jitter(rng, (214, 116, 128)))
        _ellipse(draw, x, y, r * 0.45, r * 0.45, _jitter(rng, (232, 168, 176)))
    radius = CELL_RADIUS[label] * scale * rng.uniform(0.9, 1.1)
    cx = rng.uniform(radius + 2, width - radius - 2)
    cy = rng.uniform(radius + 2, height - radius - 2)
    _draw_white_cell(draw, rng, label, cx, cy, radius)
    image = image.filter(ImageFilter.GaussianBlur(radius=max(0.6, scale)))
    noise = rng.normal(0, 4, (height, width, 3))
    image = Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))
    box = tuple(int(round(v)) for v in (cx - radius, cy - radius, cx + radius, cy + radius))
    return image, box


def generate(dest, per_class=30, size=(640, 480), seed=0):
    """Write JPEGImages/, Annotations/ and a Kaggle-format labels.csv below `dest`."""
    dest = Path(dest)
    (dest / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (dest / "Annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = int(size[0]), int(size[1])
    rows = []
    for number in range(per_class * len(CLASSES)):
        label = CLASSES[number % len(CLASSES)]
        image, box = make_image(rng, label, width, height)
        name = f"BloodImage_{number:05d}"
        image.save(dest / "JPEGImages" / f"{name}.jpg", quality=92)
        write_voc(dest / "Annotations" / f"{name}.xml", f"{name}.jpg", (width, height), [("WBC", box)])
        rows.append((number, label))
    # Like the real labels.csv: an unlabelled row and a two-subtype row, both without an image.
    rows += [(len(rows), ""), (len(rows) + 1, "NEUTROPHIL, EOSINOPHIL")]
    with open(dest / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "Image", "Category"])
        writer.writerows(["", number, label] for number, label in rows)
    return len(rows)
