"""Stage clean: apply the cleaning rules, split, crop the white cells, write data/clean/.

Outputs: data/clean/{train,val,test}.csv (image, label, box), data/clean/images/*.png
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

from bloodcells import cells, cleaning, images, locator
from bloodcells.atomic import atomic_dir, save_figure, write_json
from bloodcells.classes import CLASSES
from bloodcells.errors import UserError, stage_main
from bloodcells.params import load_params

RAW_DIR = Path("data/raw")
CLEAN_DIR = Path("data/clean")
METRICS_FILE = Path("metrics/data.json")
LOCATOR_FILE = Path("metrics/locator.json")
PLOT_FILE = Path("plots/clean/class_distribution.png")


def prepare_images(frame, params, out_dir, notes):
    """Crop (or resize) every image once; returns the readable rows with their box, and the unreadable count.
    What was converted or fixed on the way is appended to `notes`."""
    boxes, unreadable = [], 0
    for name in tqdm(frame["image"], desc="prepare images", unit="img", disable=None):
        path = RAW_DIR / "JPEGImages" / f"{name}.jpg"
        try:
            image = images.open_rgb(path, notes)
        except UserError as error:
            if not params["skip_corrupt"]:
                raise UserError(f"{error}; replace the file or set clean.skip_corrupt: true to skip it") from None
            unreadable += 1
            continue
        box, how = cells.locate_wbc(np.asarray(image), RAW_DIR / "Annotations" / f"{name}.xml",
                                    params["fallback_box_size"], notes, params["locator"])
        cells.cut_crop(image, box, params).save(out_dir / "images" / f"{name}.png")
        boxes.append((name, *box, how))
    boxes = pd.DataFrame(boxes, columns=["image", "xmin", "ymin", "xmax", "ymax", "box_source"])
    return frame.merge(boxes, on="image"), unreadable


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


def class_counts(frame):
    return {name: int((frame["label"] == name).sum()) for name in CLASSES} | {"total": len(frame)}


def plot_distribution(raw_counts, clean_counts):
    labels = list(CLASSES) + ["empty", "multiple", "other"]
    before = [raw_counts[k] for k in labels]
    after = [clean_counts.get(k, 0) for k in labels]
    x = np.arange(len(labels))
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.bar(x - 0.2, before, 0.4, label=f"labels.csv ({raw_counts['total']} rows)")
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
    params = load_params(("data", "clean"))
    p, seed = params["clean"], params["data"]["seed"]
    folds = params["data"]["folds"]
    labels_path = RAW_DIR / "labels.csv"
    notes = []
    labels = cleaning.read_labels(labels_path, notes)
    raw_counts = cleaning.count_categories(labels)
    kept, dropped = cleaning.apply_rules(labels, RAW_DIR / "JPEGImages", p["drop_empty"], p["drop_multiple"],
                                         p["drop_classes"], p["drop_missing_images"], labels_path)
    with atomic_dir(CLEAN_DIR) as out:
        (out / "images").mkdir()
        kept, dropped["corrupt_image"] = prepare_images(kept, p, out, notes)
        train, val, test = cleaning.split(kept, params["data"], p["test_size"], p["val_size"])
        train_resampled = cleaning.resample_train(train, p["neutrophil_drop_fraction"], p["oversample"], seed)
        for name, part in (("train", train_resampled), ("val", val), ("test", test)):
            part.to_csv(out / f"{name}.csv", index=False)
        (out / "crop.json").write_text(json.dumps({key: p[key] for key in cells.CROP_KEYS}, indent=2) + "\n")
        summary = {
            "split": {"folds": folds, "fold": params["data"]["fold"] if folds else None, "seed": seed},
            "raw": raw_counts,
            "clean": class_counts(kept),
            "train": class_counts(train),
            "train_resampled": class_counts(train_resampled),
            "val": class_counts(val),
            "test": class_counts(test),
            "dropped": dropped,
            "box_source": {how: int((kept["box_source"] == how).sum()) for how in ("voc", "stain", "centre")},
            "handled_input_problems": len(notes),
        }
        write_json(METRICS_FILE, summary)
        located = measure_locator(RAW_DIR)
        write_json(LOCATOR_FILE, located)
        plot_distribution(raw_counts, summary["clean"])
    if notes:  # handled, not rejected: said in one line
        print(f"handled {len(notes)} input problem(s): " + " | ".join(notes))
    if located["images"]:
        print(f"stain locator against {located['images']} annotated boxes: IoU >= 0.5 in "
              f"{located['iou_at_least_0.5']:.1%}, median IoU {located['median_iou']:.3f}")
    counts = ", ".join(f"{k} {v}" for k, v in summary["clean"].items())
    how = f"fold {params['data']['fold']} of {folds}" if folds else "random split"
    print(f"cleaned: {counts}; {how} (seed {seed}): train {len(train)} (resampled {len(train_resampled)}), "
          f"val {len(val)}, test {len(test)}")


if __name__ == "__main__":
    main()
