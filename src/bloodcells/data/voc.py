"""Pascal-VOC annotation files: read the white cell's box, write boxes for synthetic data."""
import xml.etree.ElementTree as ET
from pathlib import Path

from bloodcells.core.errors import UserError


def read_boxes(path, name="WBC"):
    """All boxes (xmin, ymin, xmax, ymax) of objects called `name` in a VOC file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise UserError(f"{path}: not a readable Pascal-VOC XML file ({error}); fix or delete it")
    boxes = []
    for obj in root.iter("object"):
        if (obj.findtext("name") or "").strip() == name:
            try:
                bndbox = obj.find("bndbox")
                boxes.append(tuple(int(float(bndbox.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")))
            except (AttributeError, TypeError, ValueError):
                raise UserError(f"{path}: a {name} object has no numeric bndbox xmin, ymin, xmax, ymax; fix or delete it")
    return boxes


def fit_box(box, width, height):
    """A box as it can be used on a width x height image: corners in order, clipped to the image; None when
    nothing of it is left inside (wholly outside, or no area)."""
    xmin, xmax = sorted((box[0], box[2]))
    ymin, ymax = sorted((box[1], box[3]))
    xmin, xmax = max(0, xmin), min(width, xmax)
    ymin, ymax = max(0, ymin), min(height, ymax)
    return (xmin, ymin, xmax, ymax) if xmax > xmin and ymax > ymin else None


def largest_box(boxes):
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), default=None)


def write_voc(path, filename, size, objects):
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = filename
    size_element = ET.SubElement(root, "size")
    for key, value in zip(("width", "height", "depth"), (*size, 3)):
        ET.SubElement(size_element, key).text = str(value)
    for name, box in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, key).text = str(value)
    ET.indent(root)
    Path(path).write_bytes(ET.tostring(root) + b"\n")
