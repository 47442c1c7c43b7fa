"""One folder per class: <root>/<class>/<image>, as PBC (PBC_dataset_normal_DIB/<class>/*.jpg), Raabin-WBC, LISC
or a laboratory's own export ship. The class list is the sorted folder names; any image format PIL reads."""
import hashlib
from pathlib import Path, PurePosixPath

import pandas as pd
from PIL import Image, UnidentifiedImageError

NAME = "class-folders"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")
IGNORED_FOLDERS = ("__MACOSX",)  # what macOS's zip adds beside the data


def hidden(rel):
    return any(part.startswith(".") or part in IGNORED_FOLDERS for part in PurePosixPath(rel).parts)


def find_root(names):
    """The shallowest folder (as a POSIX prefix, '' for the top) with two or more sub-folders that hold images
    directly; None where there is none."""
    classes_of = {}
    for name in names:
        path = PurePosixPath(name)
        if hidden(name) or len(path.parts) < 2 or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        root = path.parent.parent.as_posix()
        classes_of.setdefault("" if root == "." else root + "/", set()).add(path.parent.name)
    roots = [root for root, classes in classes_of.items() if len(classes) >= 2]
    return min(roots, key=lambda r: (r.count("/"), r)) if roots else None


def wanted(rel):
    """Every file inside a class folder: the clean stage sorts out what is not an image, and says so."""
    return len(PurePosixPath(rel).parts) >= 2 and not PurePosixPath(rel).parts[0] in IGNORED_FOLDERS


def check_copy(root_files, where):
    return None


def read_index(raw_dir, notes):
    """(index, the data's classes (sorted folder names), counts of what was left out and why) of data/raw.

    Left out, each said in one line: hidden files, files that are not images (PBC ships a .DS_Store named
    .DS_169665.jpg), empty class folders, the extra copies of a byte-identical image within a class, and
    every copy of an image found under two classes (one of its labels is wrong)."""
    raw_dir = Path(raw_dir)
    counts = {"hidden_file": 0, "not_an_image": 0, "duplicate_in_class": 0, "duplicate_across_classes": 0}
    rows, skipped = [], {"hidden_file": [], "not_an_image": []}
    folders = sorted(p for p in raw_dir.iterdir() if p.is_dir() and not hidden(p.name))
    nested = 0
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        found = 0
        for path in files:
            rel = path.relative_to(raw_dir).as_posix()
            if hidden(path.relative_to(folder).as_posix()):
                skipped["hidden_file"].append(rel)
                continue
            if not is_image(path):
                skipped["not_an_image"].append(rel)
                continue
            nested += path.parent != folder
            rows.append({"class": folder.name, "path": rel, "digest": digest(path)})
            found += 1
        if not found:
            notes.append(f"{folder.relative_to(raw_dir)}/: no images in this class folder; it is not a class")
    for kind, paths in skipped.items():
        counts[kind] = len(paths)
        if paths:
            what = "hidden file(s)" if kind == "hidden_file" else "file(s) that are not images"
            notes.append(f"{len(paths)} {what} skipped, e.g. {paths[0]}")
    if nested:
        notes.append(f"{nested} image(s) in sub-folders of a class folder taken into that class")
    frame = pd.DataFrame(rows, columns=["class", "path", "digest"])
    frame, counts["duplicate_in_class"], counts["duplicate_across_classes"] = without_duplicates(frame, notes)
    frame["image"] = image_names(frame)
    index = pd.DataFrame({"image": frame["image"], "path": frame["path"], "category": frame["class"],
                          "annotation": ""})
    return index.reset_index(drop=True), sorted(frame["class"].unique()), counts


def is_image(path):
    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return False


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def without_duplicates(frame, notes):
    """Byte-identical images: within one class the first (by path) is kept; under two classes none is, since one
    of the labels is wrong. Either way no copy can sit in the training split while another is tested."""
    across = frame.groupby("digest")["class"].transform("nunique") > 1
    if across.any():
        pairs = frame[across].groupby("digest")["path"].apply(" = ".join)
        notes.append(f"{int(across.sum())} copies of {len(pairs)} image(s) found under two classes left out "
                     f"(one label is wrong): {'; '.join(pairs.iloc[:3])}")
    frame = frame[~across]
    repeated = frame.duplicated("digest")
    if repeated.any():
        first = frame[frame["digest"].isin(frame.loc[repeated, "digest"])].groupby("digest")["path"].apply(" = ".join)
        notes.append(f"{int(repeated.sum())} byte-identical duplicate(s) within a class left out (one copy kept): "
                     f"{'; '.join(first.iloc[:3])}")
    return frame[~repeated], int(repeated.sum()), int(across.sum())


def image_names(frame):
    """A unique name per image: the file's stem, or <class>_<stem> where two classes share a stem."""
    stems = frame["path"].map(lambda rel: PurePosixPath(rel).stem)
    clash = stems.duplicated(keep=False)
    prefixed = frame["class"] + "_" + stems
    names = stems.where(~clash, prefixed)
    if names.duplicated().any():  # the same stem twice in one class (sub-folders): the path tells them apart
        names = frame["path"].map(lambda rel: str(PurePosixPath(rel).with_suffix("")).replace("/", "_"))
    return names
