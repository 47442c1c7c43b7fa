"""BCCD's labels.csv and the reference project's cleaning rules, the stratified split and the train-only
resampling. The class list is always the data's (bloodcells.data.classes), passed in."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from bloodcells.core.errors import UserError, require

# BCCD's own class order (the reference project's), kept so that its labels keep their indices; a label of
# labels.csv outside it (BASOPHIL) follows, sorted.
BCCD_CLASSES = ("NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE")


def image_name(number):
    return f"BloodImage_{int(number):05d}"


def read_labels(path, notes=None):
    """Kaggle's labels.csv (',Image,Category') as a frame with columns image, category. Repeated rows of an
    image with the same label are dropped (said in `notes`); an image listed with two labels is an error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; run the fetch stage first (dvc repro fetch)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty; re-fetch it (dvc repro -f fetch) or fix data.source") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a readable CSV file ({error}); re-fetch it")
    missing = [c for c in ("Image", "Category") if c not in frame.columns]
    require(not missing, f"{path}: missing column(s) {', '.join(missing)}; expected Kaggle's format ',Image,Category'")
    require(len(frame) > 0, f"{path} has a header but no rows; re-fetch it or fix data.source")
    bad = frame.loc[~frame["Image"].str.strip().str.fullmatch(r"\d+"), "Image"]
    if not bad.empty:
        raise UserError(f"{path}: Image must be the image number, got {bad.iloc[0]!r} in row {bad.index[0] + 2}")
    labels = pd.DataFrame({
        "image": frame["Image"].map(image_name),
        "category": frame["Category"].str.upper().str.replace(" ", "", regex=False),
    })
    return without_repeats(labels, path, notes)


def without_repeats(labels, path, notes):
    repeated = labels[labels.duplicated("image", keep=False)]
    for image, rows in repeated.groupby("image", sort=True):
        if rows["category"].nunique() > 1:
            lines = ", ".join(str(i + 2) for i in rows.index)
            raise UserError(f"{path}: {image} is listed with different labels "
                            f"({' / '.join(rows['category'])}) on lines {lines}; keep the right one")
    if not repeated.empty and notes is not None:
        extra = int(labels.duplicated("image").sum())
        notes.append(f"{path}: {extra} repeated row(s) of the same image and label dropped "
                     f"(first: {repeated['image'].iloc[0]})")
    return labels.drop_duplicates("image").reset_index(drop=True)


def label_classes(labels):
    """The classes of labels.csv: every single label it uses, BCCD's four first in their order."""
    single = {c for c in labels["category"] if c and "," not in c}
    return [c for c in BCCD_CLASSES if c in single] + sorted(single - set(BCCD_CLASSES))


def count_categories(frame, classes):
    """Per-class counts plus the rows the rules drop (empty, multiple, other classes)."""
    counts = {name: int((frame["category"] == name).sum()) for name in classes}
    counts["empty"] = int((frame["category"] == "").sum())
    counts["multiple"] = int(frame["category"].str.contains(",").sum())
    counts["other"] = len(frame) - sum(counts.values())
    counts["total"] = len(frame)
    return counts


def apply_rules(labels, raw_dir, classes, drop_empty=True, drop_multiple=True, drop_classes=("BASOPHIL",),
                drop_missing_images=True, labels_path="labels.csv"):
    """Keep the rows of an index (bloodcells.data.layouts) with one of `classes` and an image file; return them and the
    per-rule drop counts."""
    dropped = {}
    rules = [
        ("empty", labels["category"] == "", drop_empty),
        ("multiple", labels["category"].str.contains(","), drop_multiple),
        ("class", labels["category"].isin(list(drop_classes)), True),
    ]
    keep = pd.Series(True, index=labels.index)
    for rule, matches, active in rules:
        dropped[rule] = int((matches & keep).sum()) if active else 0
        if active:
            keep &= ~matches
    kept = labels[keep]
    unknown = kept.loc[~kept["category"].isin(classes)]
    if not unknown.empty:
        row = unknown.iloc[0]
        raise UserError(f"{labels_path}: label {row['category'] or '(empty)'!r} of {row['image']} is not one of "
                        f"{', '.join(classes)}; drop it with clean.drop_classes / drop_empty / drop_multiple")
    has_image = kept["path"].map(lambda rel: (Path(raw_dir) / rel).is_file())
    if not drop_missing_images and not has_image.all():
        missing = kept.loc[~has_image, "path"].iloc[0]
        raise UserError(f"{Path(raw_dir) / missing} is missing; restore it or set clean.drop_missing_images: true")
    dropped["missing_image"] = int((~has_image).sum())
    return kept[has_image].rename(columns={"category": "label"}).reset_index(drop=True), dropped


def _cut(part, fraction, seed):
    """Hold out `fraction` of `part` (at least one image per class), stratified by label."""
    size = max(math.ceil(fraction * len(part)), part["label"].nunique())
    return train_test_split(part, test_size=size, stratify=part["label"], random_state=seed)


def _sorted(*parts):
    return tuple(part.sort_values("image").reset_index(drop=True) for part in parts)


def class_counts(frame, classes):
    return {name: int((frame["label"] == name).sum()) for name in classes}


def split_stratified(frame, test_size, val_size, seed, classes):
    """Test, then validation from the rest, both stratified by label; returns train, val, test."""
    counts = class_counts(frame, classes)
    require(min(counts.values()) >= 3, f"every class needs at least 3 images to split, got {counts}; use more "
                                       "data or leave the small classes out (clean.drop_classes)")
    rest, test = _cut(frame, test_size, seed)
    train, val = _cut(rest, val_size, seed)
    return _sorted(train, val, test)


def fold_assignment(frame, folds, seed, classes):
    """The fold (0 .. folds-1) in which each row of `frame` is tested: a stratified K-fold partition,
    shuffled by `seed` and independent of the frame's row order."""
    counts = class_counts(frame, classes)
    require(min(counts.values()) >= folds + 2,
            f"{folds}-fold cross-validation needs at least {folds + 2} images of every class, got "
            f"{counts}; lower data.folds, use more data or leave the small classes out (clean.drop_classes)")
    order = np.argsort(frame["image"].to_numpy(), kind="stable")
    assignment = np.empty(len(frame), dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, tested) in enumerate(splitter.split(order, frame["label"].to_numpy()[order])):
        assignment[order[tested]] = fold
    return assignment


def split_fold(frame, folds, fold, val_size, seed, classes):
    """Fold `fold` of a stratified `folds`-fold partition is the test split; validation is drawn from the
    other folds as in split_stratified. Returns train, val, test."""
    assignment = fold_assignment(frame, folds, seed, classes)
    tested = assignment == fold
    train, val = _cut(frame[~tested], val_size, seed)
    return _sorted(train, val, frame[tested])


def split(frame, folds, fold, seed, test_size, val_size, classes):
    """Fold `fold` of `folds`-fold cross-validation (data.fold, data.folds), or with folds 0 one random stratified
    split of `test_size` (clean.test_size)."""
    if folds == 0:
        return split_stratified(frame, test_size, val_size, seed, classes)
    return split_fold(frame, folds, fold, val_size, seed, classes)


def leave_out_of_training(train, suspects):
    """The training rows less the images named in `suspects` (a label audit's list); the validation and test
    splits are never touched, so scores stay comparable with and without it."""
    return train[~train["image"].isin(set(suspects))]


def resample_train(train, undersample, oversample, seed, classes):
    """Drop a share of the rows of the classes in `undersample` ({class: share}), then oversample: per-class
    factors, 'balance' or 'none'."""
    rng = np.random.default_rng(seed)
    for label in [c for c in classes if c in undersample]:
        rows = train.index[train["label"] == label]
        train = train.drop(index=rng.choice(rows, size=round(undersample[label] * len(rows)), replace=False))
    groups = {label: train[train["label"] == label] for label in classes}
    if oversample == "balance":
        target = max(len(g) for g in groups.values())
        factors = {label: target / len(g) for label, g in groups.items()}
    elif oversample in ("none", None):
        factors = {label: 1 for label in classes}
    else:  # per-class factors, checked by the params schema
        factors = {label: oversample.get(label, 1) for label in classes}
    parts = []
    for label, group in groups.items():
        whole, fraction = divmod(factors[label], 1)
        extra = group.sample(n=round(fraction * len(group)), random_state=int(rng.integers(2**31)))
        parts += [group] * int(whole) + [extra]
    return pd.concat(parts).sort_values("image", kind="stable").reset_index(drop=True)
