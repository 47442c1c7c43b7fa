"""Every kind of bad input a person can hand the data stages: one line and exit 2, nothing left for DVC to cache;
or, where it can be handled (odd image modes and sizes, repeated rows, broken boxes), handled and said in one line.
Each case runs the stage script as DVC does, on tiny synthetic data."""
import json
import sys

import numpy as np
import pytest
from PIL import Image

from bloodcells.models import checkpoints
from conftest import run, set_params, stage

RAW = "data/raw"
IMAGE = f"{RAW}/JPEGImages/BloodImage_00005.jpg"
XML = f"{RAW}/Annotations/BloodImage_00005.xml"


def labels(project):
    return project / RAW / "labels.csv"


def rewrite_labels(project, edit):
    lines = labels(project).read_text().splitlines()
    labels(project).write_text("\n".join(edit(lines)) + "\n")


def one_line_error(result):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def cleaned(project):
    return stage(project, "clean")


@pytest.fixture
def fetched(project):
    stage(project, "fetch")
    return project


REJECTED = {
    "labels.csv missing": (lambda p: labels(p).unlink(), "no labels.csv and no class folders found; run the fetch stage first"),
    "labels.csv empty": (lambda p: labels(p).write_text(""), "labels.csv is empty"),
    "labels.csv header only": (lambda p: rewrite_labels(p, lambda lines: lines[:1]), "has a header but no rows"),
    "labels.csv without Category": (lambda p: rewrite_labels(p, lambda lines: [",".join(l.split(",")[:2])
                                                                                for l in lines]),
                                    "missing column(s) Category"),
    "an image with two labels": (lambda p: rewrite_labels(p, lambda lines: lines + [",0,MONOCYTE"]),
                                 "BloodImage_00000 is listed with different labels"),
    "a .jpg that is not an image": (lambda p: (p / IMAGE).write_text("not a picture"),
                                    "BloodImage_00005.jpg: cannot read image"),
    "a truncated JPEG": (lambda p: (p / IMAGE).write_bytes((p / IMAGE).read_bytes()[:400]),
                         "BloodImage_00005.jpg: cannot read image"),
    "a class with too few images for the folds": (
        lambda p: set_params(p, {"clean": {"min_images": 1}}) or rewrite_labels(
            p, lambda lines: [l for l in lines if "MONOCYTE" not in l] + [l for l in lines if "MONOCYTE" in l][:2]),
        "5-fold cross-validation needs at least 7 images of every class"),
}


def test_a_class_below_min_images_is_left_out_and_said(fetched):
    """A label the data has too few images of (BCCD's basophils, a stray PLATELET) is left out, not fatal."""
    rewrite_labels(fetched, lambda lines: [l for l in lines if "MONOCYTE" not in l]
                   + [l for l in lines if "MONOCYTE" in l][:2] + [",999,PLATELET"])
    result = stage(fetched, "clean")
    assert "class(es) with fewer than clean.min_images = 10 images left out: MONOCYTE (2), PLATELET (1)" \
        in result.stdout
    assert json.loads((fetched / "data/clean/classes.json").read_text())["classes"] == \
        ["NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE"]


@pytest.mark.parametrize("case", REJECTED)
def test_bad_data_is_one_line_and_leaves_no_output(fetched, case):
    spoil, message = REJECTED[case]
    spoil(fetched)
    error = one_line_error(stage(fetched, "clean", check=False))
    assert message in error
    assert not (fetched / "data/clean").exists() and not (fetched / "metrics/data.json").exists()
    assert not list((fetched / "data").glob(".clean.*"))


def save_as(project, mode, size=None):
    with Image.open(project / IMAGE) as original:
        image = original.convert("RGB").resize(size or original.size)
    if mode == "I;16":
        wide = (np.asarray(image.convert("L"), dtype=np.uint16) * 257)
        Image.fromarray(wide).save(project / IMAGE, format="PNG")  # 16-bit: PNG content under the .jpg name
    else:
        image.convert(mode).save(project / IMAGE, format="TIFF" if mode == "CMYK" else "PNG")


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16"])
def test_other_image_modes_are_converted_and_said(fetched, mode):
    save_as(fetched, mode)
    result = cleaned(fetched)
    assert "handled 1 input problem(s)" in result.stdout and "converted to 8-bit RGB" in result.stdout
    with Image.open(fetched / "data/clean/images/BloodImage_00005.png") as crop:
        assert crop.mode == "RGB" and crop.size == (64, 64)
        pixels = np.asarray(crop)
    assert 20 < pixels.mean() < 245  # not clipped white or black (16-bit scaled, not cut at 255)


def test_an_image_of_another_size_is_used(fetched):
    save_as(fetched, "RGB", size=(80, 60))
    cleaned(fetched)
    with Image.open(fetched / "data/clean/images/BloodImage_00005.png") as crop:
        assert crop.size == (64, 64)


def test_repeated_rows_of_the_same_label_are_dropped_and_said(fetched):
    rewrite_labels(fetched, lambda lines: lines + [lines[1]])
    result = cleaned(fetched)
    assert "1 repeated row(s) of the same image and label dropped" in result.stdout
    assert json.loads((fetched / "metrics/data.json").read_text())["clean"]["total"] == 40


def set_box(project, box):
    text = (project / XML).read_text()
    start, end = text.index("<bndbox>"), text.index("</bndbox>") + len("</bndbox>")
    corners = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    (project / XML).write_text(text[:start] + f"<bndbox>{corners}</bndbox>" + text[end:])


@pytest.mark.parametrize("spoil, expected", [
    (lambda p: (p / XML).write_text("<annotation><object>"), "not a readable Pascal-VOC XML file"),
    (lambda p: set_box(p, ("a", 1, 2, 3)), "has no numeric bndbox"),
    (lambda p: set_box(p, (-30, -20, 60, 50)), "partly or wholly outside"),
    (lambda p: set_box(p, (120, 90, 40, 30)), "swapped corners"),
    (lambda p: set_box(p, (500, 400, 600, 450)), "partly or wholly outside"),
])
def test_broken_annotations_are_handled_and_said(fetched, spoil, expected):
    spoil(fetched)
    result = cleaned(fetched)
    assert "handled 1 input problem(s)" in result.stdout and expected in result.stdout
    assert (fetched / "data/clean/images/BloodImage_00005.png").is_file()


def test_a_clipped_box_is_used_inside_the_image(fetched):
    set_box(fetched, (120, 90, 40, 30))
    cleaned(fetched)
    rows = (fetched / "data/clean/train.csv").read_text() + (fetched / "data/clean/val.csv").read_text() \
        + (fetched / "data/clean/test.csv").read_text()
    row = next(line for line in rows.splitlines() if line.startswith("BloodImage_00005,"))
    assert ",40,30,120,90,voc" in row


def test_a_stage_run_from_elsewhere_says_where_to_run_it(tmp_path):
    result = run([sys.executable, str(__import__("conftest").ROOT / "src/clean.py")], tmp_path, check=False)
    assert "params.yaml not found: run the stage from the project root" in one_line_error(result)


def test_bad_checkpoints_handed_to_evaluate_are_one_line_and_write_no_metrics(project):
    run(["dvc", "repro", "train_resnet", "train_efficientnet", "train_alexnet"], project)
    model = project / "models/resnet.pt"
    good = model.read_bytes()
    import torch
    checkpoint = checkpoints.read(model)
    cases = {
        "cut short": (lambda: model.write_bytes(good[: len(good) // 2]), "cannot read it as a checkpoint"),
        "not a checkpoint": (lambda: torch.save([1, 2, 3], model), "is not a checkpoint of this project"),
        "another class order": (lambda: torch.save({**checkpoint, "classes": checkpoint["classes"][::-1]}, model),
                                "was trained with classes"),
        "another arch": (lambda: model.write_bytes((project / "models/alexnet.pt").read_bytes()),
                         "holds a alexnet model (alexnet), not one of resnet18"),
        "weights of another shape": (lambda: torch.save({**checkpoint, "arch": "resnet34"}, model),
                                     "its weights do not fit resnet34"),
    }
    for case, (spoil, message) in cases.items():
        spoil()
        error = one_line_error(stage(project, "evaluate", check=False))
        assert message in error and "dvc repro -f train_resnet" in error, case
        assert not list((project / "metrics").glob("evaluate/*.json")), case
        model.write_bytes(good)
    stage(project, "evaluate")  # and with the good file back, it runs


@pytest.mark.parametrize("weights, message", [
    (b"not a state dict", "cannot read weights/resnet/start.pt as a PyTorch state dict"),
    ("alexnet", "does not fit this arch"),
])
def test_bad_starting_weights_are_one_line(fetched, weights, message):
    import torch
    from bloodcells.models.factory import build_model
    stage(fetched, "clean")
    path = fetched / "weights/resnet/start.pt"
    if weights == "alexnet":
        torch.save(build_model("alexnet", "alexnet", 80, num_classes=4).state_dict(), path)
    else:
        path.write_bytes(weights)
    __import__("conftest").set_params(fetched, {"models": {"resnet": {"weights": "weights/resnet/start.pt"}}})
    error = one_line_error(stage(fetched, "train", "resnet", check=False))
    assert message in error and not (fetched / "models/resnet.pt").exists()
