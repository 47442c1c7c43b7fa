"""A dataset's class list: read from the data by the clean stage, filtered and renamed by its params, written once
to data/clean/classes.json, and read from there (or from a checkpoint) by every later stage. Nothing else fixes
the classes, their number or their order; a label's index is its place in this list."""
import difflib
import json
from pathlib import Path

from bloodcells.core.errors import UserError

CLEAN_DIR = Path("data/clean")
FILE_NAME = "classes.json"


def write(folder, classes):
    (Path(folder) / FILE_NAME).write_text(json.dumps({"classes": list(classes)}, indent=2) + "\n")


def read(folder=CLEAN_DIR):
    path = Path(folder) / FILE_NAME
    if not path.is_file():
        raise UserError(f"{path} not found; it comes from the clean stage: dvc repro clean")
    classes = json.loads(path.read_text()).get("classes")
    if not classes or len(set(classes)) != len(classes):
        raise UserError(f"{path} holds no usable class list; re-run the clean stage (dvc repro -f clean)")
    return list(classes)


def index(classes):
    return {name: position for position, name in enumerate(classes)}


def unknown_names(names, known, key):
    """One problem line per name of `names` that is not a class of the data, with a did-you-mean."""
    problems = []
    for name in names:
        if name not in known:
            by_lower = {str(k).lower(): k for k in known}
            close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1)
            hint = f"did you mean {by_lower[close[0]]}?" if close else f"the data's classes: {', '.join(known)}"
            problems.append(f"{key}: {name!r} is not a class of the data ({hint})")
    return problems


def choose(data_classes, drop=(), rename=None, keep=None):
    """The classes the pipeline learns: the data's classes less `drop`, renamed by `rename` ({old: new}), and with
    `keep` only those, in keep's order. Returns (classes, {old name: new name} of every class kept)."""
    rename = rename or {}
    kept = [name for name in data_classes if name not in set(drop)]
    names = {old: rename.get(old, old) for old in kept}
    renamed = list(dict.fromkeys(names.values()))
    if keep:
        names = {old: new for old, new in names.items() if new in keep}
        renamed = [name for name in keep if name in renamed]
    return renamed, names
