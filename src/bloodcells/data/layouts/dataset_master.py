"""Kaggle's `dataset-master` layout of BCCD: labels.csv (',Image,Category'), JPEGImages/BloodImage_NNNNN.jpg and
optional VOC boxes in Annotations/BloodImage_NNNNN.xml."""
from pathlib import Path

import pandas as pd

from bloodcells.data import cleaning

NAME = "dataset-master"
FOLDERS = {"JPEGImages": ".jpg", "Annotations": ".xml"}  # the layout's folders and the extension of their files


def find_root(names):
    """The folder (as a POSIX prefix, '' for the top) holding labels.csv; dataset2-master is ignored."""
    candidates = [n for n in names if Path(n).name == "labels.csv" and "dataset2-master" not in n]
    if not candidates:
        return None
    best = min(candidates, key=lambda n: (len(Path(n).parts), n))
    parent = Path(best).parent.as_posix()
    return "" if parent == "." else parent + "/"


def wanted(rel):
    """Whether a file (relative to the root) belongs to the layout."""
    parts = Path(rel).parts
    if parts == ("labels.csv",):
        return True
    return len(parts) == 2 and parts[0] in FOLDERS and parts[1].lower().endswith(FOLDERS[parts[0]])


def check_copy(root_files, where):
    """A copy whose labels.csv has no JPEGImages/ beside it is no dataset-master."""
    if not any(rel.startswith("JPEGImages/") for rel in root_files):
        return f"{where}: no JPEGImages/ folder next to labels.csv; expected Kaggle's dataset-master layout"
    return None


def layout_files(root):
    """Relative paths of the files of the layout below `root`, sorted (what the manifest hashes)."""
    root = Path(root)
    files = [Path("labels.csv")] if (root / "labels.csv").is_file() else []
    for folder, extension in FOLDERS.items():
        if (root / folder).is_dir():
            files += sorted(p.relative_to(root) for p in (root / folder).glob(f"*{extension}"))
    return files


def read_index(raw_dir, notes):
    """(index, the data's classes in BCCD's order, counts of what was left out) of a dataset-master copy."""
    labels = cleaning.read_labels(Path(raw_dir) / "labels.csv", notes)
    index = pd.DataFrame({"image": labels["image"], "path": "JPEGImages/" + labels["image"] + ".jpg",
                          "category": labels["category"], "annotation": "Annotations/" + labels["image"] + ".xml"})
    return index, cleaning.label_classes(labels), {}
