"""The stain locator and predict: new photographs, bad files among them, and the same numbers as evaluate."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bloodcells.data import locator, photos, synthetic
from bloodcells.data.cleaning import BCCD_CLASSES as CLASSES
from conftest import copy_project, run


def synthetic_photos(count, seed, size=(640, 480)):
    rng = np.random.default_rng(seed)
    return [synthetic.make_image(rng, CLASSES[n % 4], *size) for n in range(count)]


def centre_inside(found, box):
    x, y = (found[0] + found[2]) / 2, (found[1] + found[3]) / 2
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def test_stain_locator_finds_synthetic_white_cells_and_never_a_wrong_one():
    found_boxes = [(locator.stain_box(np.asarray(image)), box) for image, box in synthetic_photos(48, seed=5)]
    found = [(located, box) for located, box in found_boxes if located is not None]
    assert len(found) >= 0.9 * len(found_boxes)  # the misses are neutrophils whose thin lobes fall apart
    for located, box in found:
        assert centre_inside(located, box) and locator.iou(located, box) > 0.2, (located, box)


@pytest.mark.parametrize("stain", ["pale", "dark", "bluish"])
def test_stain_locator_copes_with_differently_stained_slides(stain):
    """The threshold is the photograph's own (Otsu), so a paler or darker stain moves it with the colours."""
    for image, box in synthetic_photos(8, seed=6)[1::2]:  # eosinophils and monocytes
        pixels = np.asarray(image).astype(np.float32)
        if stain == "pale":
            pixels = 255 - (255 - pixels) * 0.55
        elif stain == "dark":
            pixels = pixels * 0.7
        else:
            pixels = pixels * np.array([0.85, 0.95, 1.1])
        found = locator.stain_box(np.clip(pixels, 0, 255).astype(np.uint8))
        assert found is not None and centre_inside(found, box), (stain, found, box)


def test_stain_locator_finds_nothing_where_there_is_no_stained_cell():
    assert locator.stain_box(np.full((480, 640, 3), (230, 215, 220), np.uint8)) is None
    red_cells_only = np.full((480, 640, 3), (236, 204, 214), np.uint8)
    red_cells_only[100:160, 100:160] = (214, 116, 128)
    red_cells_only[300:360, 400:460] = (214, 116, 128)
    assert locator.stain_box(red_cells_only) is None


def test_iou_and_agreement():
    assert locator.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert locator.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert locator.iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    summary = locator.agreement([1.0, 0.8, 0.4, 0.0])
    assert summary == {"images": 4, "iou_at_least_0.5": 0.5, "median_iou": 0.6, "mean_iou": 0.55}


def test_find_images_searches_folders_and_names_what_is_missing(tmp_path):
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    for rel in ("a/1.jpg", "a/b/2.PNG", "a/b/3.tif", "a/notes.txt", "a/.hidden.jpg"):
        (tmp_path / rel).write_bytes(b"x")
    found, problems = photos.find_images([tmp_path / "a", tmp_path / "a/1.jpg", tmp_path / "empty",
                                          tmp_path / "nope.jpg", tmp_path / "a/notes.txt"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/1.jpg", "a/b/2.PNG", "a/b/3.tif",
                                                                   "a/notes.txt"]
    assert problems == [f"{tmp_path / 'empty'}: no image files (.jpg, .jpeg, .png, .tif, .tiff, .bmp, .webp, .gif) "
                        "in this folder", f"{tmp_path / 'nope.jpg'}: no such file or folder"]


def test_box_arguments():
    assert photos.parse_box("10,20.4,110,120") == (10, 20, 110, 120)
    with pytest.raises(Exception, match="four pixel numbers"):
        photos.parse_box("10,20,30")


@pytest.fixture(scope="module")
def trained(reproduced_template, tmp_path_factory):
    """The tiny synthetic project after `dvc repro`: three trained models, evaluate's predictions, compare (a copy
    of the session's, shared by this module's tests)."""
    return copy_project(reproduced_template[0], tmp_path_factory.mktemp("predict") / "project")


def predict(project, *args, check=True):
    return run([sys.executable, "src/predict.py", *map(str, args)], project, check=check)


def test_predict_with_the_annotated_boxes_gives_evaluates_probabilities(trained):
    """One inference path: the test split's photographs, cut by predict around their VOC boxes, score exactly as
    the evaluate stage scored the clean stage's crops (default model: the best of metrics/compare.json)."""
    test = pd.read_csv(trained / "data/clean/test.csv")
    best = json.loads((trained / "metrics/compare.json").read_text())["best_model"]
    photos_given = [trained / "data/raw/JPEGImages" / f"{name}.jpg" for name in test["image"]]
    result = predict(trained, *photos_given, "--boxes", "data/clean/test.csv", "--out", "out.json")
    assert f"models/{best}.onnx" in result.stderr and "TTA on" in result.stderr  # the default: its ONNX export
    predicted = pd.DataFrame(json.loads((trained / "out.json").read_text()))
    predicted["image"] = predicted["file"].map(lambda f: f.rsplit("/", 1)[-1][:-4])
    assert (predicted["located_by"] == "given").all()
    evaluated = pd.read_csv(trained / f"metrics/evaluate/predictions/{best}.csv")
    merged = evaluated.merge(predicted, on="image", suffixes=("_evaluate", "_predict"))
    assert len(merged) == len(test) == 8
    for label in CLASSES:  # evaluate's file holds 5 decimals, predict's 6
        assert np.abs(merged[f"p_{label}_evaluate"] - merged[f"p_{label}_predict"]).max() <= 1e-5
    assert (merged["predicted_evaluate"] == merged["predicted_predict"]).all()


def test_predict_a_folder_with_bad_files_classifies_the_rest(trained, tmp_path):
    folder = tmp_path / "smears"
    (folder / "day2").mkdir(parents=True)
    raw = trained / "data/raw/JPEGImages"
    shutil.copy(raw / "BloodImage_00000.jpg", folder / "a.jpg")
    (folder / "b_not_an_image.jpg").write_text("these are notes, not a photograph")
    (folder / "c_empty.png").write_bytes(b"")
    Image.new("RGB", (160, 120), (236, 204, 214)).save(folder / "d_no_cell.png")
    with Image.open(raw / "BloodImage_00001.jpg") as image:
        image.convert("L").save(folder / "day2/e_grey.tif")
        image.convert("RGBA").save(folder / "day2/f_rgba.png")
        wide = (np.asarray(image.convert("L"), dtype=np.uint16) * 257)
        Image.fromarray(wide).save(folder / "day2/g_16bit.png")
    result = predict(trained, folder, "--out", tmp_path / "results.csv", "--overlay", tmp_path / "pictures",
                     "--no-tta", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(str(folder))]
    assert len(errors) == 3 and all(": " in line for line in errors)
    assert any("b_not_an_image.jpg: cannot read image" in line for line in errors)
    assert any("c_empty.png: cannot read image" in line for line in errors)
    assert any("d_no_cell.png: no white cell found" in line for line in errors)
    assert "TTA off" in result.stderr and "3 file(s) or path(s) could not be classified" in result.stderr
    results = pd.read_csv(tmp_path / "results.csv", keep_default_na=False)
    assert len(results) == 7
    good = results[results["error"] == ""]
    assert sorted(good["file"].map(lambda f: f.rsplit("/", 1)[-1])) == ["a.jpg", "e_grey.tif", "f_rgba.png",
                                                                        "g_16bit.png"]
    assert set(good["predicted"]) <= set(CLASSES) and (good["located_by"] == "stain").all()
    probabilities = good[[f"p_{label}" for label in CLASSES]].astype(float).sum(axis=1)
    assert np.allclose(probabilities, 1, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["a.png", "e_grey.png", "f_rgba.png",
                                                                         "g_16bit.png"]
    with Image.open(tmp_path / "pictures/a.png") as picture:
        assert picture.width > 600 and picture.height > 150
    for line in result.stdout.splitlines():
        assert line.split(": ")[1].split()[0] in CLASSES and "cell at" in line


def test_predict_bad_arguments_are_one_line(trained, tmp_path):
    photo = trained / "data/raw/JPEGImages/BloodImage_00000.jpg"
    for args, message in [
        ((photo, "--out", tmp_path / "r.txt"), "--out must end in .csv or .json"),
        ((photo, photo.parent / "BloodImage_00001.jpg", "--box", "1,2,3,4"), "--box gives the box of one image"),
        ((photo, "--box", "1,2"), "--box must be four pixel numbers"),
        ((photo, "--batch-size", "0"), "--batch-size must be at least 1"),
        ((photo, "--model", tmp_path / "none.pt"), "none.pt not found"),
        ((photo, "--model", "params.yaml"), "cannot read it as a checkpoint"),
        ((photo, "--out", "params.yaml/results.csv"), "params.yaml is a file, not a folder"),
        ((photo, "--out", tmp_path), "is a folder; name a .csv or .json file"),
        ((photo, "--overlay", "params.yaml"), "a file of that name exists; name a folder"),
        ((photo, "--overlay", "params.yaml/pictures"), "params.yaml is a file, not a folder"),
    ]:
        result = predict(trained, *args, check=False)
        assert result.returncode == 2, args
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and message in result.stderr, args
        assert "classifying" not in result.stderr, args  # refused before any work
    compare = trained / "metrics/compare.json"
    compare.rename(tmp_path / "compare.json")
    try:
        result = predict(trained, photo, check=False)
        assert result.returncode == 2 and "there is no best model to pick" in result.stderr
    finally:
        (tmp_path / "compare.json").rename(compare)
    boxed = predict(trained, photo, "--box", "0,0,80,80", "--model", "models/alexnet.pt")
    assert "cell at 0,0,80,80 (given)" in boxed.stdout and "alexnet" in boxed.stderr


def test_ctrl_c_during_predict_keeps_no_picture_and_no_results(trained, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(60):
        shutil.copy(trained / f"data/raw/JPEGImages/BloodImage_{n % 40:05d}.jpg", folder / f"{n:03d}.jpg")
    pictures, results = tmp_path / "pictures", tmp_path / "results.json"
    running = subprocess.Popen([sys.executable, "src/predict.py", str(folder), "--overlay", str(pictures),
                                "--out", str(results), "--batch-size", "4"], cwd=trained,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (pictures.is_dir() and any(pictures.glob("*.png"))) and time.monotonic() < deadline:
        time.sleep(0.1)
    running.send_signal(signal.SIGINT)
    assert running.wait(timeout=60) == 130 and "interrupted" in running.stderr.read()
    assert not results.exists() and not list(pictures.glob("*.png")) and not list(tmp_path.rglob("*.tmp"))


def test_evaluate_scores_calibrated_probabilities_and_says_what_abstaining_gives(trained):
    """The temperature fitted on the validation split is stored in the model and applied by evaluate; its answers are
    the uncalibrated model's, and the risk-coverage curve is written for dvc plots."""
    from bloodcells.models import checkpoints
    for name in ("resnet", "efficientnet", "alexnet"):
        evaluation = json.loads((trained / f"metrics/evaluate/{name}.json").read_text())
        temperature = checkpoints.read(trained / f"models/{name}.pt")["temperature"]
        assert evaluation["temperature"] == temperature["tta"] and set(temperature) == {"single_view", "tta"}
        assert 0 <= evaluation["expected_calibration_error"] <= 1
        assert 0 <= evaluation["expected_calibration_error_before"] <= 1
        assert {"accuracy_at_coverage_0.95", "accuracy_at_coverage_0.90", "coverage_at_accuracy_0.99"} \
            <= set(evaluation["abstention"])
        curve = pd.read_csv(trained / f"metrics/evaluate/predictions/{name}_risk_coverage.csv")
        assert curve["coverage"].is_monotonic_increasing and curve["coverage"].iloc[-1] == 1
        assert curve["accuracy"].iloc[-1] == pytest.approx(evaluation["accuracy"], abs=1e-6)
        assert curve["threshold"].is_monotonic_decreasing


def test_the_onnx_export_gives_pytorchs_outputs_and_predict_runs_it_without_torch(trained, tmp_path):
    """The graph takes the crops as cut, resizes and standardises them inside, and matches PyTorch within 1e-4 at any
    batch size; predict's ONNX engine gives the torch engine's probabilities, and never imports torch."""
    import onnxruntime
    from bloodcells.data import dataset as data
    from bloodcells.data.dataset import dihedral
    from bloodcells.models.inference import load_checkpoint, model_inputs, predict_probabilities
    images, _, _ = data.load_split("test", trained / "data/clean", require_all_classes=False)
    for name in ("resnet", "efficientnet", "alexnet"):
        model, checkpoint = load_checkpoint(trained / f"models/{name}.pt", name)
        session = onnxruntime.InferenceSession(str(trained / f"models/{name}.onnx"),
                                               providers=["CPUExecutionProvider"])
        for batch in (images[:1], images):  # the batch axis is dynamic
            expected = predict_probabilities(model, model_inputs(batch, checkpoint), checkpoint.mean,
                                             checkpoint.std).numpy()
            logits, probabilities = session.run(None, {"crops": batch.numpy()})
            got = np.exp(logits - logits.max(axis=1, keepdims=True))
            assert np.abs(got / got.sum(axis=1, keepdims=True) - expected).max() <= 1e-4, name
            single = checkpoint.temperature["single_view"]
            scaled = np.exp((logits - logits.max(axis=1, keepdims=True)) / single)
            assert np.abs(scaled / scaled.sum(axis=1, keepdims=True) - probabilities).max() <= 1e-5, name
        for view in (1, 6):  # test-time augmentation's views, turned after the resize as evaluate turns them
            expected = predict_probabilities(model, dihedral(model_inputs(images, checkpoint), view),
                                             checkpoint.mean, checkpoint.std).numpy()
            logits, _ = session.run(None, {"crops": images.numpy(), "view": np.array(view)})
            got = np.exp(logits - logits.max(axis=1, keepdims=True))
            assert np.abs(got / got.sum(axis=1, keepdims=True) - expected).max() <= 1e-4, (name, view)
        meta = json.loads(session.get_modelmeta().custom_metadata_map["bloodcells"])
        assert meta["classes"] == checkpoint.classes and meta["temperature"] == checkpoint.temperature

    test = pd.read_csv(trained / "data/clean/test.csv")
    given = [trained / "data/raw/JPEGImages" / f"{name}.jpg" for name in test["image"]]
    no_torch = tmp_path / "no_torch"  # an import of torch fails: the ONNX engine must not need it
    (no_torch / "torch").mkdir(parents=True)
    (no_torch / "torch/__init__.py").write_text("raise ImportError('torch is not to be imported here')\n")
    onnx_run = run([sys.executable, "src/predict.py", *map(str, given), "--boxes", "data/clean/test.csv",
                    "--model", "models/resnet.onnx", "--out", str(tmp_path / "onnx.csv")], trained,
                   env={"PYTHONPATH": str(no_torch)})
    assert "(onnx)" in onnx_run.stderr
    predict(trained, *given, "--boxes", "data/clean/test.csv", "--model", "models/resnet.pt",
            "--out", tmp_path / "torch.csv")
    by_onnx, by_torch = pd.read_csv(tmp_path / "onnx.csv"), pd.read_csv(tmp_path / "torch.csv")
    columns = [f"p_{label}" for label in CLASSES]
    assert np.abs(by_onnx[columns].to_numpy() - by_torch[columns].to_numpy()).max() <= 1e-4
    assert (by_onnx["predicted"] == by_torch["predicted"]).all()


def test_predict_min_confidence_answers_uncertain_below_it(trained, tmp_path):
    test = pd.read_csv(trained / "data/clean/test.csv")
    given = [trained / "data/raw/JPEGImages" / f"{name}.jpg" for name in test["image"]]
    model = ("--model", "models/resnet.pt")  # the tiny models' top probabilities differ from image to image
    predict(trained, *given, "--boxes", "data/clean/test.csv", "--out", tmp_path / "all.csv", *model)
    answered = pd.read_csv(tmp_path / "all.csv")
    threshold = float(answered["probability"].min() + answered["probability"].max()) / 2
    result = predict(trained, *given, "--boxes", "data/clean/test.csv", "--out", tmp_path / "some.csv",
                     "--min-confidence", threshold, *model)
    some = pd.read_csv(tmp_path / "some.csv")
    below = some["probability"] < threshold
    assert below.any() and (~below).any()
    assert (some.loc[below, "predicted"] == "uncertain").all()
    assert (some.loc[~below, "predicted"] == some.loc[~below, "best_guess"]).all()
    assert (some["best_guess"] == answered["predicted"]).all()
    assert result.stdout.count("uncertain (best guess") == below.sum()


def test_predict_bad_engine_and_confidence_input_is_one_line(trained, tmp_path):
    import onnx
    from onnx import TensorProto, helper
    photo = trained / "data/raw/JPEGImages/BloodImage_00000.jpg"
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX model of another project: no metadata of ours
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), foreign)
    no_runtime = tmp_path / "no_runtime"
    (no_runtime / "onnxruntime").mkdir(parents=True)
    (no_runtime / "onnxruntime/__init__.py").write_text("raise ImportError('no onnxruntime here')\n")
    cases = [
        ((photo, "--min-confidence", "0"), "--min-confidence must lie between 0 and 1", {}),
        ((photo, "--min-confidence", "1.5"), "--min-confidence must lie between 0 and 1", {}),
        ((photo, "--model", foreign), "not one of this project", {}),
        ((photo, "--model", "params.yaml", "--engine", "onnx"), "--engine onnx needs a .onnx file", {}),
        ((photo, "--model", "models/resnet.onnx", "--engine", "torch"), "--engine torch needs a .pt", {}),
        ((photo, "--model", "models/resnet.onnx", "--overlay", tmp_path / "p"), "use --engine torch for it", {}),
        ((photo, "--model", "models/resnet.onnx"), "needs ONNX Runtime, which is not installed",
         {"PYTHONPATH": str(no_runtime)}),
    ]
    for args, message, env in cases:
        result = subprocess.run([sys.executable, "src/predict.py", *map(str, args)], cwd=trained, capture_output=True,
                                text=True, env={**os.environ, **env})
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, lines)


def test_evaluate_refuses_a_crafted_model_and_runs_nothing(trained, tmp_path):
    import torch

    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'it-ran'}",)

    model = trained / "models/resnet.pt"  # the first evaluate reads: it stops before writing anything
    kept, scores = model.read_bytes(), (trained / "metrics/evaluate/resnet.json").read_text()
    try:
        torch.save({"state_dict": {}, "hook": RunsCode()}, model)
        result = run([sys.executable, "src/evaluate.py"], trained, check=False)
    finally:
        model.write_bytes(kept)
    assert result.returncode == 2 and "refused, nothing in it was run" in result.stderr
    assert not (tmp_path / "it-ran").exists()
    assert (trained / "metrics/evaluate/resnet.json").read_text() == scores


def test_the_model_card_is_drawn_from_the_records(trained):
    for name in ("resnet", "efficientnet", "alexnet"):
        card = (trained / f"models/{name}.md").read_text()
        evaluation = json.loads((trained / f"metrics/evaluate/{name}.json").read_text())
        machine = json.loads((trained / f"metrics/train/{name}/machine.json").read_text())
        assert "not for diagnosis" in card and f"Accuracy **{evaluation['accuracy']:.3f}**" in card
        for label, row in evaluation["per_class"].items():
            assert f"| {label} | {row['sensitivity']:.3f} | {row['specificity']:.3f} |" in card
        assert f"{evaluation['expected_calibration_error_before']:.3f} before, " \
               f"**{evaluation['expected_calibration_error']:.3f}** after" in card
        assert machine["cpu"] in card and "In plain words: trained on BCCD" in card and "on BCCD's images" in card
        assert "/tmp" not in card and "Source: synthetic" in card


def test_the_default_model_runs_on_its_onnx_export_only_where_that_export_is_of_this_checkpoint(trained, tmp_path):
    photo = trained / "data/raw/JPEGImages/BloodImage_00000.jpg"
    best = json.loads((trained / "metrics/compare.json").read_text())["best_model"]
    assert f"models/{best}.onnx" in predict(trained, photo).stderr
    assert f"models/{best}.pt" in predict(trained, photo, "--overlay", tmp_path / "pictures").stderr  # Grad-CAM
    exported = trained / f"models/{best}.onnx"
    other = next(name for name in ("resnet", "efficientnet", "alexnet") if name != best)
    kept = exported.read_bytes()
    try:
        exported.write_bytes((trained / f"models/{other}.onnx").read_bytes())  # an export of another checkpoint
        assert f"models/{best}.pt" in predict(trained, photo).stderr
    finally:
        exported.write_bytes(kept)
