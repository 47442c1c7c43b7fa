"""Pascal-VOC annotation files: read the white cell's box, write boxes for synthetic data."""
import xml.etree.ElementTree as ET
from pathlib import Path

from .errors import UserError


def read_boxes(path, name="WBC"):
    """All boxes (xmin, ymin, xmax, ymax) of objects called `name` in a VOC file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise UserError(f"{path}: not a readable Pascal-VOC XML file ({error}); fix or delete it")
    boxes = []
    for obj in root.iter("object"):
        if (obj.findtext("name") or "").strip() == name:
            bndbox = obj.find("bndbox")
            boxes.append(tuple(int(float(bndbox.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")))
    return boxes


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
