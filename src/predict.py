"""Classify the white cell of new smear photographs with a trained model.

Usage: python src/predict.py PATH... [--model models/resnet.pt|.onnx] [--engine torch|onnx] [--out results.csv|.json]
       [--overlay DIR] [--box x0,y0,x1,y1 | --boxes boxes.csv] [--tta | --no-tta] [--min-confidence P]

PATH: image files (JPEG, PNG, TIFF, BMP, WebP; any size; grayscale, RGBA and 16-bit are converted) and folders,
searched recursively. The white cell is found by the stain locator (no annotation needed) unless a box is given,
and cut exactly as the clean stage cut the training crops (the settings travel in the model file); the
probabilities come from the same inference code as the evaluate stage, with its test-time augmentation
(evaluate.tta in params.yaml) unless --tta / --no-tta says otherwise, and the model's temperature (calibrated
probabilities). With --min-confidence P, a photograph whose top probability is below P is answered `uncertain` (its
best guess is still written). Without --model, the best model of metrics/compare.json is used, on ONNX Runtime where
its export models/<name>.onnx is there and up to date (measured faster than eager PyTorch), else on PyTorch;
--engine onnx runs an exported model without importing PyTorch. A model file is read without running anything in it. A file that cannot be classified gets one line and makes the exit status 1; every other file is still
classified and written.
"""
import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from bloodcells.data import photos
from bloodcells.core.atomic import atomic_file, write_json
from bloodcells.core.digests import file_digest
from bloodcells.core.errors import UserError, stage_main
from bloodcells.config.params import load_params

COMPARE_FILE = Path("metrics/compare.json")
ENGINES = ("torch", "onnx")
UNCERTAIN = "uncertain"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders (searched recursively)")
    parser.add_argument("--model", help="a models/<name>.pt file, or .onnx for --engine onnx (default: the best "
                                            "model of metrics/compare.json)")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="torch: the checkpoint with PyTorch | onnx: models/<name>.onnx with ONNX Runtime "
                             "(default: onnx for a .onnx --model, else torch)")
    parser.add_argument("--min-confidence", type=float, default=None, metavar="P",
                        help="answer 'uncertain' where the top probability is below P, 0 < P < 1")
    parser.add_argument("--out", help="write the results to this .csv or .json file")
    parser.add_argument("--overlay", metavar="DIR", help="write a picture of each prediction (PNG) to this folder")
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument("--box", help="the white cell's box x0,y0,x1,y1 in pixels (one image only)")
    boxes.add_argument("--boxes", metavar="CSV", help="boxes per image: columns image, xmin, ymin, xmax, ymax "
                                                      "(image = file name without suffix), e.g. data/clean/test.csv")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="average the 8 dihedral views (default: evaluate.tta of params.yaml)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: evaluate.batch_size of params.yaml")
    return parser.parse_args()


def check_output_path(path, option, folder=False):
    """Refuse, before any work, an output path that cannot be written: the path itself a folder (or, for a folder
    option, a file), or a file standing where one of its parent folders would be."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: a file of that name exists; name a folder for the pictures")
    if not folder and path.is_dir():
        raise UserError(f"{option} {path} is a folder; name a .csv or .json file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{option} {path}: {parent} is a file, not a folder; choose another path")
            if not os.access(parent, os.W_OK):
                raise UserError(f"{option} {path}: cannot write in {parent} (no permission); choose another path")
            return


def default_model(engine):
    if not COMPARE_FILE.is_file():
        raise UserError(f"{COMPARE_FILE} not found, so there is no best model to pick; run the pipeline "
                        "(dvc repro) or name a model with --model models/<name>.pt")
    best = json.loads(COMPARE_FILE.read_text()).get("best_model")
    if not best:
        raise UserError(f"{COMPARE_FILE} names no best_model; re-run the compare stage or use --model")
    return Path("models") / f"{best}.{'onnx' if engine == 'onnx' else 'pt'}"


def exported_beside(checkpoint_path):
    """The .onnx file exported from this very checkpoint (its metadata names the checkpoint's MD5), where it and ONNX
    Runtime are there: predict's default engine, measured faster than eager PyTorch at batch 1 and 32
    (docs/models.md). None otherwise."""
    exported = Path(checkpoint_path).with_suffix(".onnx")
    if not exported.is_file() or not Path(checkpoint_path).is_file():
        return None
    try:
        from bloodcells.models.onnx_engine import OnnxModel
        made_from = OnnxModel(exported).checkpoint.checkpoint_md5
    except UserError:
        return None
    return exported if made_from == file_digest(checkpoint_path, "md5") else None


def choose_engine(args):
    """(engine, model path) from --engine and --model: a .onnx model runs on ONNX Runtime, a .pt one on PyTorch;
    the default model runs on ONNX Runtime where its export is there and up to date (and no --overlay asks for
    Grad-CAM), else on PyTorch."""
    if args.engine is None and args.model is None:
        checkpoint_path = default_model("torch")
        exported = None if args.overlay else exported_beside(checkpoint_path)
        return ("onnx", exported) if exported else ("torch", checkpoint_path)
    engine = args.engine or ("onnx" if args.model and Path(args.model).suffix == ".onnx" else "torch")
    model_path = Path(args.model) if args.model else default_model(engine)
    if engine == "torch" and model_path.suffix == ".onnx":
        raise UserError(f"--engine torch needs a .pt checkpoint, got {model_path}; use --engine onnx for it")
    if engine == "onnx" and model_path.suffix != ".onnx":
        raise UserError(f"--engine onnx needs a .onnx file, got {model_path}; use {model_path.with_suffix('.onnx')} "
                        "(written by dvc repro export)")
    if engine == "onnx" and args.overlay:
        raise UserError("--overlay draws class activation maps from the PyTorch model; use --engine torch for it")
    return engine, model_path


class TorchEngine:
    """The checkpoint on PyTorch, as the evaluate stage runs it."""

    def __init__(self, path):
        from bloodcells.models import inference  # torch loads only for this engine
        self.inference = inference
        self.model, self.checkpoint = inference.load_checkpoint(path)

    def probabilities(self, crops, batch_size, tta):
        """(calibrated probabilities [N, classes], the model's inputs for the overlay)."""
        inputs = self.inference.model_inputs(crops, self.checkpoint)
        raw = self.inference.predict_probabilities(self.model, inputs, self.checkpoint.mean,
                                                   self.checkpoint.std, batch_size, tta)
        return self.inference.calibrate(raw, self.checkpoint, tta).numpy(), inputs


class OnnxEngine:
    """The exported model on ONNX Runtime (bloodcells.models.onnx_engine): no torch imported."""

    def __init__(self, path):
        from bloodcells.models.onnx_engine import OnnxModel
        self.session = OnnxModel(path)
        self.checkpoint = self.session.checkpoint

    def probabilities(self, crops, batch_size, tta):
        return self.session.probabilities(crops, batch_size, tta), None


def boxes_for(args, files):
    """{path: box} of the boxes the user gave."""
    if args.box:
        if len(files) != 1:
            raise UserError(f"--box gives the box of one image, but {len(files)} images were found; "
                            "use --boxes CSV for several")
        return {files[0]: photos.parse_box(args.box)}
    if args.boxes:
        by_name = photos.read_boxes_csv(args.boxes)
        return {path: by_name[path.stem] for path in files if path.stem in by_name}
    return {}


def batches(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def result_row(photo, classes, probabilities=None, overlay=None, min_confidence=None):
    """One photograph's result: the predicted class of the model's `classes` (`uncertain` below `min_confidence`),
    its best guess, every class's probability, the box."""
    row = {"file": str(photo.path), "predicted": "", "probability": None, "best_guess": ""}
    row |= {f"p_{label}": None for label in classes}
    row |= dict(zip(("xmin", "ymin", "xmax", "ymax"), [int(v) for v in photo.box] if photo.box else (None,) * 4))
    row |= {"located_by": photo.located_by if photo.box else "", "overlay": overlay or "", "error": photo.error}
    if probabilities is not None:
        predicted = int(probabilities.argmax())
        row["best_guess"], row["probability"] = classes[predicted], round(float(probabilities[predicted]), 6)
        sure = min_confidence is None or probabilities[predicted] >= min_confidence
        row["predicted"] = classes[predicted] if sure else UNCERTAIN
        row |= {f"p_{label}": round(float(p), 6) for label, p in zip(classes, probabilities)}
    return row


def result_line(row, classes):
    shares = " ".join(f"{label[:4]} {row[f'p_{label}']:.2f}" for label in classes)
    box = ",".join(str(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
    answer = f"{row['predicted']} {row['probability']:.2f}" if row["predicted"] != UNCERTAIN else \
        f"{UNCERTAIN} (best guess {row['best_guess']} {row['probability']:.2f})"
    return f"{row['file']}: {answer} ({shares}); cell at {box} ({row['located_by']})"


def overlay_name(photo, used):
    name = photo.path.stem
    stem, count = name, 1
    while name in used:
        count += 1
        name = f"{stem}-{count}"
    used.add(name)
    return f"{name}.png"


def write_results(path, rows):
    path = Path(path)
    if path.suffix == ".json":
        write_json(path, rows)
    else:
        with atomic_file(path) as tmp:
            frame = pd.DataFrame(rows)
            box = ["xmin", "ymin", "xmax", "ymax"]
            frame[box] = frame[box].astype("Int64")  # whole pixels, empty where no cell was found
            frame.to_csv(tmp, index=False)


class Classifier:
    """The model and settings of one run: classifies the prepared photographs of a chunk, prints a line for each
    and returns their result rows."""

    def __init__(self, engine, tta, batch_size, overlay_dir, label, min_confidence):
        self.engine, self.checkpoint, self.tta, self.batch_size = engine, engine.checkpoint, tta, batch_size
        self.overlay_dir, self.label, self.used_names = overlay_dir, label, set()
        self.min_confidence = min_confidence
        self.classes = list(self.checkpoint.classes)  # the model's own, in its order

    def __call__(self, ready, progress):
        good = [photo for photo in ready if not photo.error]
        if good:
            probabilities, inputs = self.engine.probabilities([photo.crop for photo in good], self.batch_size, self.tta)
            pictures = self.draw(good, inputs, probabilities) if self.overlay_dir else [None] * len(good)
            found = dict(zip(map(id, good), zip(probabilities, pictures)))
        rows = []
        for photo in ready:
            if photo.error:
                tqdm.write(photo.error, file=sys.stderr)
                rows.append(result_row(photo, self.classes))
            else:
                rows.append(result_row(photo, self.classes, *found[id(photo)], self.min_confidence))
                tqdm.write(result_line(rows[-1], self.classes))
            progress.update(1)
        return rows

    def draw(self, good, inputs, probabilities):
        import torch
        from bloodcells.evaluation import overlay  # captum loads only when pictures are asked for
        heat = overlay.class_activation(self.engine.model, inputs, self.checkpoint.mean, self.checkpoint.std,
                                        torch.from_numpy(probabilities.argmax(axis=1)))
        pictures = []
        for photo, shares, cam in zip(good, probabilities, heat):
            pictures.append(str(Path(self.overlay_dir) / overlay_name(photo, self.used_names)))
            overlay.draw_overlay(pictures[-1], photo, shares, cam.numpy(), self.label, self.classes)
            photo.image = None
        return pictures


@stage_main
def main():
    args = parse_args()
    if args.out:
        check_output_path(args.out, "--out")
    if args.out and Path(args.out).suffix not in (".csv", ".json"):
        raise UserError(f"--out must end in .csv or .json, got {args.out}")
    if args.overlay:
        check_output_path(args.overlay, "--overlay", folder=True)
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.min_confidence is not None and not 0 < args.min_confidence < 1:
        raise UserError(f"--min-confidence must lie between 0 and 1 (a probability, e.g. 0.9), got {args.min_confidence}")
    settings = load_params(("evaluate",)).evaluate
    tta = settings.tta if args.tta is None else args.tta
    batch_size = args.batch_size or settings.batch_size
    engine_name, model_path = choose_engine(args)
    engine = (OnnxEngine if engine_name == "onnx" else TorchEngine)(model_path)
    checkpoint = engine.checkpoint
    crop = checkpoint.crop
    files, problems = photos.find_images(args.paths)
    given = boxes_for(args, files)
    for line in problems:
        print(line, file=sys.stderr)
    label = f"{checkpoint.arch}, {model_path}, TTA {'on' if tta else 'off'}"
    print(f"classifying {len(files)} image(s) with {label} ({engine_name})", file=sys.stderr)
    classify = Classifier(engine, tta, batch_size, args.overlay, label, args.min_confidence)
    rows = []
    progress = tqdm(total=len(files), desc="predict", unit="img", disable=None if len(files) > 1 else True)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        def prepare(path):
            return photos.prepare_photo(path, crop, given.get(path), keep_image=bool(args.overlay))

        chunks = batches(files, batch_size)
        pending = pool.map(prepare, next(chunks, []))
        for chunk in chunks:  # the next chunk is cut while the model classifies this one
            ready, pending = list(pending), pool.map(prepare, chunk)
            rows += classify(ready, progress)
        rows += classify(list(pending), progress)
    progress.close()
    seconds = time.perf_counter() - started
    if args.out:
        write_results(args.out, rows)
    classified = sum(1 for row in rows if not row["error"])
    failed = len(problems) + len(rows) - classified
    rate = f"{classified / seconds:.1f} images/s" if seconds > 0 else ""
    print(f"classified {classified} of {len(files)} image(s) in {seconds:.1f} s ({rate})"
          + (f"; results in {args.out}" if args.out else "") + (f"; pictures in {args.overlay}/" if args.overlay else ""),
          file=sys.stderr)
    if failed:
        print(f"{failed} file(s) or path(s) could not be classified; see the lines above", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
