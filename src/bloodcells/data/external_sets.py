"""External test sets: another laboratory's labelled images (a local folder or zip in any layout of
bloodcells.data.layouts) cut as their own layout is cut, their classes matched to a trained model's, and the model's
predictions on them scored like its test split. Images of a class the model does not know are kept and reported
(what the model called them), never dropped; the model's classes the set lacks are listed."""
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from bloodcells.data import cells, classes as class_list, cleaning, images, layouts, sources
from bloodcells.core.errors import UserError
from bloodcells.data.dataset import channel_stats
from bloodcells.evaluation.metrics import classification_metrics

# How a layout's images are cut unless the set says otherwise: a photograph of a smear around its white cell
# (the annotated box, the stain locator where there is none), a single-cell image as its centred square.
LAYOUT_CROPS = {layouts.dataset_master.NAME: {"crop": "wbc", "locator": "voc"}, layouts.class_folders.NAME: {"crop": "centre"}}
CROP_OVERRIDES = ("crop", "locator", "margin", "crop_side")  # the keys of a set that change the cut


@dataclass
class FoundSet:
    name: str
    layout: str
    mapping: dict              # {the set's class: the name it is scored as}: a model class, or its own name
    crops: dict = field(default_factory=dict)  # {crop settings as JSON: uint8 [N, 3, S, S]}, one per way of cutting
    given: list = field(default_factory=list)   # each image's class as the set names it
    labels: list = field(default_factory=list)  # ... and as it is scored (after the mapping)
    names: list = field(default_factory=list)
    dropped: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def class_mapping(set_classes, model_classes, rename, key):
    """{the set's class: what it is scored as}: `rename` ({theirs: ours}) first, else the model's class of the same
    name in any letter case, else the set's own name (a class the model does not know)."""
    rename = rename or {}
    problems = class_list.unknown_names(rename, set_classes, f"{key}.rename")
    if problems:
        raise UserError(" | ".join(problems).replace("a class of the data", "a class of this set"))
    by_lower = {name.lower(): name for name in model_classes}
    return {name: rename.get(name) or by_lower.get(name.lower(), name) for name in set_classes}


def crop_settings(model_crop, layout_name, settings):
    """The model's own crop settings (its image size, margin, edge handling), cut the way the set's layout is cut,
    with any of the set's CROP_OVERRIDES on top."""
    crop = dict(model_crop) | LAYOUT_CROPS[layout_name]
    return crop | {key: getattr(settings, key) for key in CROP_OVERRIDES if getattr(settings, key) is not None}


def read_set(name, settings, model_crops, model_classes, key=None):
    """The set `settings` (one entry of external.sets, or the params section `key`) names, every image cut once per
    distinct way in `model_crops` (the crop settings stored in the models), labelled as `class_mapping` scores it."""
    key = key or f"external.sets.{name}"
    with tempfile.TemporaryDirectory(prefix="external-") as tmp:
        raw = Path(tmp)
        layout_name = sources.import_local(settings.source, raw, key=f"{key}.source")
        found = FoundSet(name, layout_name, {})
        index, set_classes, found.dropped = layouts.LAYOUTS[layout_name].read_index(raw, found.notes)
        found.mapping = class_mapping(set_classes, model_classes, settings.rename, key)
        kept, rules = cleaning.apply_rules(index, raw, set_classes, drop_classes=(),
                                           labels_path=f"{settings.source} (labels.csv)")
        found.dropped |= rules
        ways = {json.dumps(crop_settings(crop, layout_name, settings), sort_keys=True) for crop in model_crops}
        cut = {way: [] for way in ways}
        unreadable = 0
        rows = kept[["image", "path", "annotation", "label"]].itertuples(index=False)
        for image_name, rel, annotation, label in tqdm(rows, total=len(kept), desc=f"read {name}", unit="img",
                                                       disable=None):
            try:
                image = images.open_rgb(raw / rel, found.notes)
            except UserError as error:
                found.notes.append(f"{error}; skipped")
                unreadable += 1
                continue
            for way, crops in cut.items():
                crops.append(np.asarray(cells.cut_crop(image, locate(image, raw, annotation, json.loads(way),
                                                                     found.notes), json.loads(way))))
            found.given.append(label)
            found.labels.append(found.mapping[label])
            found.names.append(image_name)
    found.dropped["unreadable_image"] = unreadable
    if not found.names:
        raise UserError(f"{key}.source: {settings.source} holds no readable labelled image")
    found.crops = {way: torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2) for way, crops in cut.items()}
    return found


def only_folds(found, settings, model_classes):
    """The set with only the images of `settings.folds`, folds of the stratified partition its own pipeline would
    make (cleaning.fold_assignment over its images of the model's classes, `fold_count` folds shuffled by
    `fold_seed`, stratified by the set's own class names): BCCD's folds 0-1 to choose by, 2-4 to report on.
    Images of classes the model does not know belong to no fold and are left out."""
    if not settings.folds:
        return found
    known = [i for i, label in enumerate(found.labels) if label in model_classes]
    frame = pd.DataFrame({"image": [found.names[i] for i in known], "label": [found.given[i] for i in known]})
    assignment = cleaning.fold_assignment(frame, settings.fold_count, settings.fold_seed,
                                          sorted(set(frame["label"])))
    kept = [i for i, fold in zip(known, assignment) if fold in settings.folds]
    index = torch.tensor(kept, dtype=torch.long)
    return FoundSet(found.name, found.layout, found.mapping, {way: crops[index] for way, crops in found.crops.items()},
                    [found.given[i] for i in kept], [found.labels[i] for i in kept], [found.names[i] for i in kept],
                    found.dropped | {"other_folds": len(found.names) - len(kept)}, found.notes)


def locate(image, raw, annotation, crop, notes):
    if crop["crop"] != "wbc":
        return (0, 0, *image.size)
    voc = raw / annotation if annotation else None
    return cells.locate_wbc(np.asarray(image), voc, crop["fallback_box_size"], notes, crop["locator"])[0]


def images_for(found, model_crop, settings):
    """The set's crops cut the way this model's crop settings (with the set's layout and overrides) ask."""
    return found.crops[json.dumps(crop_settings(model_crop, found.layout, settings), sort_keys=True)]


def statistics(inputs, checkpoint, settings):
    """The channel mean and standard deviation the model's inputs are standardised by: the model's training
    statistics, or with `statistics: own` the set's own (a crude colour normalisation: another stain or camera
    brought to the same per-channel mean and spread)."""
    if getattr(settings, "statistics", None) == "own":
        return channel_stats(inputs)
    return checkpoint.mean, checkpoint.std


def score(labels, probabilities, model_classes):
    """The test-split metrics on the images of classes the model knows, and for every other class of the set how
    many images it has and what the model called them; the model's classes the set lacks are listed."""
    labels, probabilities = list(labels), np.asarray(probabilities)
    predicted = probabilities.argmax(axis=1)
    position = class_list.index(model_classes)
    known = np.array([label in position for label in labels])
    if not known.any():
        raise UserError(f"no image of this set is of a class the model knows ({', '.join(model_classes)}); map "
                        "the set's classes onto them with external.sets.<name>.rename")
    actual = np.array([position[label] for label, is_known in zip(labels, known) if is_known])
    metrics = classification_metrics(actual, predicted[known], probabilities[known], classes=model_classes)
    unknown = {}
    for label in sorted({label for label in labels if label not in position}):
        chosen = predicted[np.array([item == label for item in labels])]
        unknown[label] = {"images": int(len(chosen)),
                          "predicted_as": {name: int((chosen == i).sum()) for i, name in enumerate(model_classes)}}
    present = set(labels)
    return metrics | {"images": len(labels), "scored": int(known.sum()), "unknown_classes": unknown,
                      "missing_classes": [name for name in model_classes if name not in present]}


def data_summary(found, model_classes):
    """What was read, for metrics/external/<name>/data.json."""
    counts = {their: {"images": found.given.count(their), "scored_as": ours,
                      "known_to_the_model": ours in model_classes}
              for their, ours in found.mapping.items()}
    present = set(found.labels)
    return {"layout": found.layout, "images": len(found.names), "classes": counts,
            "missing_classes": [name for name in model_classes if name not in present],
            "dropped": found.dropped, "crop": [json.loads(way) for way in sorted(found.crops)],
            "handled_input_problems": len(found.notes)}
