"""Find the white cell of a smear photograph by its stained nucleus, with no annotation.

The nucleus is the most violet thing on a Wright/Giemsa smear: it is blue rather than green and darker in red
than the pink red cells. A stain score (blue - green - red / 2) is thresholded by Otsu's method per photograph,
so differently stained slides get their own threshold; opening and closing clean the mask, and the largest
connected component is taken as the white cell. Its box, grown to cover the cytoplasm, is the cell's box.
Measured against the VOC boxes of the real photographs in docs/locator.md (scikit-image's rgb2hed haematoxylin
channel with the same steps located fewer cells).
"""
import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu, threshold_otsu

WORKING_SIDE = 160      # the mask is computed on the photograph shrunk to about this many pixels across
GROWTH = 1.35           # nucleus box -> cell box (the nucleus fills about three quarters of the cell's width)
MIN_STAIN_SCORE = -50   # a component paler than this on average is red cells or background, not a nucleus
MIN_AREA_SHARE = 0.003  # a component smaller than this share of the photograph is a platelet or noise


def stain_score(pixels):
    rgb = pixels.astype(np.float32)
    return rgb[..., 2] - rgb[..., 1] - 0.5 * rgb[..., 0]


def thresholds(score):
    """Otsu's threshold, then the upper one of three classes: where the nucleus is a small share of the
    photograph, Otsu's two classes split background from red cells and the nucleus is in the third."""
    if float(score.max()) - float(score.min()) < 1e-6:
        return
    yield threshold_otsu(score)
    if len(np.unique(score)) >= 3:
        yield threshold_multiotsu(score, classes=3)[-1]


def nucleus_mask(score, threshold):
    """Pixels above `threshold`, opened (specks, red-cell rims) and closed (lobes), holes filled."""
    mask = ndimage.binary_opening(score > threshold, iterations=1)
    mask = ndimage.binary_closing(mask, iterations=2)
    return ndimage.binary_fill_holes(mask)


def stain_box(pixels):
    """The white cell's box (xmin, ymin, xmax, ymax) in the photograph's pixels, clipped to it; None when no
    stained nucleus is found."""
    height, width = pixels.shape[:2]
    step = max(1, max(height, width) // WORKING_SIDE)
    score = stain_score(pixels[::step, ::step])
    for threshold in thresholds(score):
        component = largest_nucleus(score, threshold)
        if component is not None:
            break
    else:
        return None
    rows, cols = component
    centre_x, centre_y = (cols.start + cols.stop) * step / 2, (rows.start + rows.stop) * step / 2
    half_w, half_h = (cols.stop - cols.start) * step * GROWTH / 2, (rows.stop - rows.start) * step * GROWTH / 2
    return (max(0, int(round(centre_x - half_w))), max(0, int(round(centre_y - half_h))),
            min(width, int(round(centre_x + half_w))), min(height, int(round(centre_y + half_h))))


def largest_nucleus(score, threshold):
    """The (rows, cols) slices of the largest component above `threshold` that is big and violet enough."""
    labels, count = ndimage.label(nucleus_mask(score, threshold))
    if count == 0:
        return None
    areas = np.bincount(labels.ravel())[1:]
    means = ndimage.mean(score, labels, np.arange(1, count + 1))
    candidates = (areas >= MIN_AREA_SHARE * labels.size) & (means >= MIN_STAIN_SCORE)
    if not candidates.any():
        return None
    return ndimage.find_objects(labels)[int(np.argmax(np.where(candidates, areas, -1)))]


def iou(box, other):
    """Intersection over union of two (xmin, ymin, xmax, ymax) boxes."""
    inter_w = max(0, min(box[2], other[2]) - max(box[0], other[0]))
    inter_h = max(0, min(box[3], other[3]) - max(box[1], other[1]))
    inter = inter_w * inter_h
    union = (box[2] - box[0]) * (box[3] - box[1]) + (other[2] - other[0]) * (other[3] - other[1]) - inter
    return inter / union if union > 0 else 0.0


def agreement(ious):
    """Summary of the locator's IoU with the annotated boxes (0 where it found nothing)."""
    ious = np.asarray(ious, dtype=float)
    if len(ious) == 0:
        return {"images": 0, "iou_at_least_0.5": None, "median_iou": None, "mean_iou": None}
    return {
        "images": int(len(ious)),
        "iou_at_least_0.5": round(float(np.mean(ious >= 0.5)), 4),
        "median_iou": round(float(np.median(ious)), 4),
        "mean_iou": round(float(np.mean(ious)), 4),
    }
