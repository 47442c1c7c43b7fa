"""Stage clean: apply the cleaning rules, split, crop the white cells, write data/clean/.

Outputs: data/clean/{train,val,test}.csv (image, label, box), data/clean/classes.json (the classes learnt, in
their order: the data's, less those left out, renamed by clean.rename), data/clean/images/*.png
(square crops, decoded once here so training never decodes a JPEG), data/clean/crop.json (how the crops
were cut, which training stores in each model so that predict cuts new photographs the same way),
metrics/data.json, metrics/locator.json (the stain locator against every annotated box) and
plots/clean/class_distribution.png.
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm import tqdm

from bloodcells.data import cells, classes, cleaning, images, layouts, locator
from bloodcells.config import schema
from bloodcells.core.atomic import atomic_dir, save_figure, write_json
from bloodcells.core.errors import UserError, stage_main
from bloodcells.config.params import PARAMS_FILE, read_params

RAW_DIR = Path("data/raw")
CLEAN_DIR = Path("data/clean")
METRICS_FILE = Path("metrics/data.json")
LOCATOR_FILE = Path("metrics/locator.json")
PLOT_FILE = Path("plots/clean/class_distribution.png")
LABEL_ISSUES_DIR = Path("label_issues")


def prepare_images(frame, crop, skip_corrupt, out_dir, notes):
    """Crop (or resize) every image once as `crop` (crop.json's settings) asks; returns the readable rows with their
    box, and the unreadable count.
    What was converted or fixed on the way is appended to `notes`."""
    boxes, unreadable = [], 0
    rows = frame[["image", "path", "annotation"]].itertuples(index=False)
    for name, rel, annotation in tqdm(rows, total=len(frame), desc="prepare images", unit="img", disable=None):
        path = RAW_DIR / rel
        try:
            image = images.open_rgb(path, notes)
        except UserError as error:
            if not skip_corrupt:
                raise UserError(f"{error}; replace the file or set clean.skip_corrupt: true to skip it") from None
            unreadable += 1
            continue
        if crop["crop"] == "wbc":
            box, how = cells.locate_wbc(np.asarray(image), RAW_DIR / annotation if annotation else None,
                                        crop["fallback_box_size"], notes, crop["locator"])
        else:  # the whole image, or its centre square: nothing to locate
            box, how = (0, 0, *image.size), "image"
        cells.cut_crop(image, box, crop).save(out_dir / "images" / f"{name}.png")
        boxes.append((name, *box, how))
    boxes = pd.DataFrame(boxes, columns=["image", "xmin", "ymin", "xmax", "ymax", "box_source"])
    return frame.merge(boxes, on="image"), unreadable


def read_suspects(record):
    """The images of a label audit (label_issues/<record>.csv, written by src/audit.py)."""
    path = LABEL_ISSUES_DIR / f"{record}.csv"
    if not path.is_file():
        raise UserError(f"clean.leave_out_of_training: {path} not found; run python src/audit.py --record {record} "
                        "first, or set it to null")
    return pd.read_csv(path)["image"]


def measure_locator(raw_dir):
    """The stain locator against the VOC WBC box of every photograph that has one (labelled or not)."""
    ious = []
    annotations = sorted((raw_dir / "Annotations").glob("*.xml"))
    for voc_path in tqdm(annotations, desc="measure locator", unit="img", disable=None):
        path = raw_dir / "JPEGImages" / f"{voc_path.stem}.jpg"
        try:
            pixels = np.asarray(images.open_rgb(path))
        except UserError:
            continue  # unreadable or missing photographs are counted by the cleaning rules
        box = cells.annotated_box(voc_path, pixels.shape[1], pixels.shape[0])
        if box is not None:
            found = locator.stain_box(pixels)
            ious.append(locator.iou(found, box) if found else 0.0)
    return locator.agreement(ious)


def class_counts(frame, learnt):
    return cleaning.class_counts(frame, learnt) | {"total": len(frame)}


def plot_distribution(raw_counts, clean_counts, names, source):
    """Rows of labels.csv per class (by the class's name after clean.rename) and the rules' drops, before and
    after cleaning."""
    learnt = list(dict.fromkeys(names.values()))
    before = [sum(raw_counts[old] for old, new in names.items() if new == name) for name in learnt]
    labels = learnt + ["empty", "multiple", "other"]
    before += [raw_counts[k] for k in ("empty", "multiple", "other")]
    after = [clean_counts.get(k, 0) for k in labels]
    x = np.arange(len(labels))
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.bar(x - 0.2, before, 0.4, label=f"{source} ({raw_counts['total']} rows)")
    axes.bar(x + 0.2, after, 0.4, label=f"cleaned ({clean_counts['total']} images)")
    for xs, values in ((x - 0.2, before), (x + 0.2, after)):
        for xi, v in zip(xs, values):
            axes.text(xi, v, str(v), ha="center", va="bottom", fontsize=8)
    axes.set_xticks(x, labels, rotation=20)
    axes.set_ylabel("images")
    axes.set_title("Class distribution before and after cleaning")
    axes.legend()
    save_figure(figure, PLOT_FILE)
    plt.close(figure)


@stage_main
def main():
    params = read_params()
    config = schema.validate(params, ("data", "clean"), str(PARAMS_FILE))
    layout = layouts.detect(RAW_DIR)
    if layout is None:
        raise UserError(f"{RAW_DIR}: no labels.csv and no class folders found; run the fetch stage first "
                        "(dvc repro fetch)")
    schema.validate(params, ("clean",), str(PARAMS_FILE), layout=layout.NAME)  # the recipe fits the layout
    notes = []
    index, data_classes, left_out_files = layout.read_index(RAW_DIR, notes)
    schema.validate(params, ("clean",), str(PARAMS_FILE), data_classes)  # the keys that name classes
    p, seed, folds = config.clean, config.data.seed, config.data.folds
    crop = {key: getattr(p, key) for key in cells.CROP_KEYS}
    sizes = index["category"].value_counts()
    too_few = [name for name in data_classes if sizes.get(name, 0) < p.min_images and name not in p.drop_classes]
    if too_few:
        print(f"class(es) with fewer than clean.min_images = {p.min_images} images left out: "
              + ", ".join(f"{name} ({sizes.get(name, 0)})" for name in too_few))
    learnt, names = classes.choose(data_classes, [*p.drop_classes, *too_few], p.rename, p.classes)
    if len(learnt) < 2:
        raise UserError(f"only {len(learnt)} class(es) left to learn ({', '.join(learnt) or 'none'}); check "
                        "clean.drop_classes, clean.classes and clean.min_images against the data's classes "
                        f"({', '.join(data_classes)})")
    raw_counts = cleaning.count_categories(index, list(names))
    left_out = [name for name in data_classes if name not in names]
    kept, dropped = cleaning.apply_rules(index, RAW_DIR, list(names), p.drop_empty, p.drop_multiple,
                                         left_out, p.drop_missing_images, RAW_DIR / "labels.csv")
    kept["label"] = kept["label"].map(names)
    dropped |= left_out_files
    with atomic_dir(CLEAN_DIR) as out:
        (out / "images").mkdir()
        kept, dropped["corrupt_image"] = prepare_images(kept, crop, p.skip_corrupt, out, notes)
        train, val, test = cleaning.split(kept, folds, config.data.fold, seed, p.test_size, p.val_size, learnt)
        before_audit = len(train)
        if p.leave_out_of_training:
            train = cleaning.leave_out_of_training(train, read_suspects(p.leave_out_of_training))
        train_resampled = cleaning.resample_train(train, p.undersample or {}, p.oversample, seed, learnt)
        classes.write(out, learnt)
        for name, part in (("train", train_resampled), ("val", val), ("test", test)):
            part.to_csv(out / f"{name}.csv", index=False)
        (out / "crop.json").write_text(json.dumps(crop, indent=2) + "\n")
        summary = {
            "split": {"folds": folds, "fold": config.data.fold if folds else None, "seed": seed},
            "raw": raw_counts,
            "clean": class_counts(kept, learnt),
            "train": class_counts(train, learnt),
            "train_resampled": class_counts(train_resampled, learnt),
            "val": class_counts(val, learnt),
            "test": class_counts(test, learnt),
            "dropped": dropped,
            "box_source": {how: int((kept["box_source"] == how).sum()) for how in ("voc", "stain", "centre", "image")
                           if how != "image" or p.crop != "wbc"},
            "layout": layout.NAME,
            "handled_input_problems": len(notes),
        }
        if p.leave_out_of_training:
            summary["left_out_of_training"] = {"audit": p.leave_out_of_training, "images": before_audit - len(train)}
        write_json(METRICS_FILE, summary)
        located = measure_locator(RAW_DIR) if (RAW_DIR / "Annotations").is_dir() else locator.agreement([])
        write_json(LOCATOR_FILE, located)
        plot_distribution(raw_counts, summary["clean"], names,
                          "labels.csv" if layout.NAME == layouts.dataset_master.NAME else "the class folders")
    if notes:  # handled, not rejected: said in one line
        print(f"handled {len(notes)} input problem(s): " + " | ".join(notes))
    if located["images"]:
        print(f"stain locator against {located['images']} annotated boxes: IoU >= 0.5 in "
              f"{located['iou_at_least_0.5']:.1%}, median IoU {located['median_iou']:.3f}")
    counts = ", ".join(f"{k} {v}" for k, v in summary["clean"].items())
    how = f"fold {config.data.fold} of {folds}" if folds else "random split"
    print(f"cleaned: {counts}; {how} (seed {seed}): train {len(train)} (resampled {len(train_resampled)}), "
          f"val {len(val)}, test {len(test)}")


if __name__ == "__main__":
    main()
