"""Dataset layouts: how a copy of a dataset is recognised, which of its files are copied into data/raw, and how
data/raw is read back as one index for the clean stage. One module per layout, tried in the order of LAYOUTS.

An index is a frame with one row per image: `image` (a unique name, which the crop and every prediction
carry), `path` (the image file, relative to data/raw), `category` (its label as the data gives it: empty or
several comma-separated labels are the cleaning rules' to drop) and `annotation` (a VOC file of the cell's box,
relative to data/raw, or empty)."""
from bloodcells.data.layouts import class_folders, dataset_master

LAYOUTS = {module.NAME: module for module in (dataset_master, class_folders)}
EXPECTED = ("Kaggle's dataset-master layout (labels.csv, JPEGImages/, optional Annotations/) or one folder per "
            "class (<class>/<image>, such as PBC's PBC_dataset_normal_DIB)")


def recognise(names):
    """(layout module, root prefix) of the first layout found among `names` (POSIX paths of the copy's files,
    relative to it), or (None, None)."""
    for layout in LAYOUTS.values():
        root = layout.find_root(names)
        if root is not None:
            return layout, root
    return None, None


def detect(raw_dir):
    """The layout of data/raw (the fetch stage copied one dataset there, at its top)."""
    names = [p.relative_to(raw_dir).as_posix() for p in raw_dir.rglob("*") if p.is_file()]
    for layout in LAYOUTS.values():
        if layout.find_root(names) == "":
            return layout
    return None
