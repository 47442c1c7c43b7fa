"""Starting weights learnt on another labelled dataset: a few hundred photographs (BCCD) start from what a model of
the same recipe learnt on thousands of images of the same cell types (PBC). The other set is read and cut as an
external test set is (its own layout decides the cut, at the target's crop size), its classes are matched to the
target's by name in any letter case or by `rename`, and its images of the shared classes (or of all its classes)
become a training and a validation split."""
import numpy as np
import torch
from sklearn.model_selection import train_test_split

from bloodcells.data import external_sets as external
from bloodcells.core.errors import UserError

KEY = "pretrain"


def training_classes(labels, target_classes, which):
    """The classes to learn, in the target's order first, so that a head trained on exactly the target's classes
    fits it row for row: `shared` the target's classes the set has; `all` those, then the set's other classes."""
    present = set(labels)
    shared = [name for name in target_classes if name in present]
    if which == "shared" and len(shared) < 2:
        raise UserError(f"{KEY}.source has {len(shared)} of the target's classes ({', '.join(target_classes)}): "
                        f"too few to learn from; map its classes onto them with {KEY}.rename, or set "
                        f"{KEY}.classes: all")
    return shared if which == "shared" else shared + sorted(present - set(target_classes))


def read_source(settings, target_crop, target_classes):
    """(uint8 crops [N, 3, S, S], class indices [N], image names, classes, the crop settings used, the FoundSet)
    of the set `settings` names, cut as its layout is cut at the target's crop size."""
    found = external.read_set(KEY, settings, [target_crop], target_classes, key=KEY)
    crops = external.images_for(found, target_crop, settings)
    classes = training_classes(found.labels, target_classes, settings.classes)
    position = {name: i for i, name in enumerate(classes)}
    keep = np.array([label in position for label in found.labels])
    labels = torch.tensor([position[label] for label in np.array(found.labels)[keep]], dtype=torch.int64)
    names = list(np.array(found.names)[keep])
    used = external.crop_settings(target_crop, found.layout, settings)
    return crops[torch.from_numpy(keep)], labels, names, classes, used, found


def validation_split(labels, share, seed):
    """(training indices, validation indices): a stratified share of the images held out to follow training."""
    indices = np.arange(len(labels))
    try:
        train, val = train_test_split(indices, test_size=share, stratify=labels.numpy(), random_state=seed)
    except ValueError as error:  # a class with one image, or a share that leaves a split without a class
        raise UserError(f"{KEY}.val_size {share}: cannot hold out a validation image of every class "
                        f"({error}); give the set more images per class or change {KEY}.val_size") from None
    return np.sort(train), np.sort(val)


def data_summary(found, classes, images, train, val):
    """What was read and learnt, for metrics/pretrain/<model>/data.json."""
    return {"layout": found.layout, "images_read": len(found.names), "images_used": int(images),
            "classes": classes, "train": int(train), "val": int(val),
            "left_out_classes": sorted({given for given, label in zip(found.given, found.labels)
                                        if label not in classes}),
            "dropped": found.dropped, "handled_input_problems": len(found.notes)}
