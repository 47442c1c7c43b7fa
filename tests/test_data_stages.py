import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bloodcells.data import cells, sources, synthetic
from bloodcells.data.cleaning import BCCD_CLASSES as CLASSES
from bloodcells.data.layouts import dataset_master
from bloodcells.data.voc import read_boxes, write_voc
from conftest import SHARED_BCCD, run, set_params, stage


def test_synthetic_is_deterministic_and_in_kaggle_layout(tmp_path):
    synthetic.generate(tmp_path / "a", per_class=2, size=(128, 96), seed=3)
    synthetic.generate(tmp_path / "b", per_class=2, size=(128, 96), seed=3)
    synthetic.generate(tmp_path / "c", per_class=2, size=(128, 96), seed=4)
    files = dataset_master.layout_files(tmp_path / "a")
    assert len(files) == 1 + 8 + 8
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert (tmp_path / "a/JPEGImages/BloodImage_00000.jpg").read_bytes() != \
        (tmp_path / "c/JPEGImages/BloodImage_00000.jpg").read_bytes()
    labels = pd.read_csv(tmp_path / "a/labels.csv", dtype=str, keep_default_na=False)
    assert (tmp_path / "a/labels.csv").read_text().splitlines()[0] == ",Image,Category"
    assert labels["Category"].tolist()[:4] == list(CLASSES)
    with Image.open(tmp_path / "a/JPEGImages/BloodImage_00001.jpg") as image:
        assert image.size == (128, 96)
    (xmin, ymin, xmax, ymax), = read_boxes(tmp_path / "a/Annotations/BloodImage_00001.xml")
    assert 0 <= xmin < xmax <= 128 and 0 <= ymin < ymax <= 96


def synthetic_crops(per_class, seed, size=40):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for n in range(per_class * len(CLASSES)):
        image, box = synthetic.make_image(rng, CLASSES[n % 4], 160, 120)
        images.append(np.asarray(cells.square_crop(image, box, 0.1, size)))
        labels.append(n % 4)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor(labels)


def test_synthetic_data_is_learnable_by_a_small_cnn():
    torch.manual_seed(0)
    train_x, train_y = synthetic_crops(30, seed=1)
    test_x, test_y = synthetic_crops(10, seed=2)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        for index in torch.randperm(len(train_x)).split(16):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(train_x[index]), train_y[index]).backward()
            optimizer.step()
    accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    assert accuracy >= 0.6, f"a small CNN reached only {accuracy:.2f} (chance is 0.25)"


def test_locate_wbc_prefers_largest_voc_box_then_stain_then_centre(tmp_path):
    pixels = np.full((120, 160, 3), 220, np.uint8)
    xml = tmp_path / "a.xml"
    write_voc(xml, "a.jpg", (160, 120), [("WBC", (10, 10, 20, 20)), ("RBC", (0, 0, 100, 100)),
                                         ("WBC", (50, 40, 110, 100))])
    assert cells.locate_wbc(pixels, xml, 40) == ((50, 40, 110, 100), "voc")
    pixels[60:80, 100:120] = (100, 40, 160)  # a violet nucleus, 20 px wide, centred on (110, 70)
    assert cells.locate_wbc(pixels, tmp_path / "none.xml", 40) == ((96, 56, 124, 84), "stain")  # grown 1.35x
    assert cells.locate_wbc(pixels, xml, 40, locator="stain") == ((96, 56, 124, 84), "stain")  # box ignored
    assert cells.locate_wbc(np.full((120, 160, 3), 220, np.uint8), None, 40) == ((60, 40, 100, 80), "centre")


def test_median_colour_is_numpys_median():
    rng = np.random.default_rng(0)
    for height, width in ((1, 1), (1, 2), (3, 5), (2, 2), (48, 64), (120, 160)):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        expected = tuple(int(v) for v in np.median(pixels.reshape(-1, 3), axis=0))
        assert cells.median_colour(Image.fromarray(pixels)) == expected


def test_square_crop_stays_inside_the_image():
    image = Image.fromarray(np.arange(120 * 160 * 3, dtype=np.uint32).reshape(120, 160, 3).astype(np.uint8))
    crop = cells.square_crop(image, (140, 100, 170, 130), margin=0.5, size=32)  # box over the corner
    assert crop.size == (32, 32)
    exact = cells.square_crop(image, (140, 90, 160, 110), margin=0.0, size=20)
    assert np.array_equal(np.asarray(exact), np.asarray(image)[90:110, 140:160])


def test_a_box_cut_by_the_edge_is_completed_past_it():
    assert cells.complete_cut_box((100, 1, 160, 31), 200, 150) == (100, -29, 160, 31)  # top edge
    assert cells.complete_cut_box((100, 130, 160, 149), 200, 150) == (100, 130, 160, 190)  # bottom edge
    assert cells.complete_cut_box((0, 40, 20, 90), 200, 150) == (-30, 40, 20, 90)  # left edge
    assert cells.complete_cut_box((50, 40, 70, 90), 200, 150) == (50, 40, 70, 90)  # inside: unchanged


def test_padded_crop_keeps_a_cut_cell_centred_and_fills_outside_with_the_median():
    pixels = np.full((120, 160, 3), 200, np.uint8)
    pixels[0:20, 60:100] = (90, 30, 150)  # the lower half of a violet cell cut by the top edge
    image = Image.fromarray(pixels)
    padded = np.asarray(cells.square_crop(image, (60, 0, 100, 20), margin=0.0, size=40, edge_cells="pad"))
    assert (padded[:20] == 200).all() and (padded[20:] == (90, 30, 150)).all()
    shifted = np.asarray(cells.square_crop(image, (60, 0, 100, 20), margin=0.0, size=40))
    assert (shifted[:20] == (90, 30, 150)).all() and (shifted[20:] == 200).all()


def test_fixed_crop_side_shows_the_same_area_whatever_the_box_size():
    image = Image.fromarray(np.arange(120 * 160 * 3, dtype=np.uint32).reshape(120, 160, 3).astype(np.uint8))
    for box in ((75, 55, 85, 65), (60, 40, 100, 80)):  # a small and a large cell, both centred on (80, 60)
        crop = cells.square_crop(image, box, margin=0.5, size=30, edge_cells="pad", side=30)
        assert np.array_equal(np.asarray(crop), np.asarray(image)[45:75, 65:95])
    by_box = cells.square_crop(image, (75, 55, 85, 65), margin=0.5, size=30)
    assert not np.array_equal(np.asarray(by_box), np.asarray(image)[45:75, 65:95])


def test_data_stages_through_dvc(project):
    result = run(["dvc", "repro", "fetch", "clean", "explore"], project)
    assert "Running stage 'explore'" in result.stdout
    summary = json.loads((project / "metrics/data.json").read_text())
    assert summary["clean"] == {"NEUTROPHIL": 10, "EOSINOPHIL": 10, "LYMPHOCYTE": 10, "MONOCYTE": 10, "total": 40}
    assert summary["dropped"]["empty"] == 1 and summary["dropped"]["multiple"] == 1
    splits = {s: pd.read_csv(project / f"data/clean/{s}.csv") for s in ("train", "val", "test")}
    assert len(splits["test"]) == 8 and len(splits["val"]) == 4  # fold 0 of 5: two images per class
    assert summary["split"] == {"folds": 5, "fold": 0, "seed": 0}
    assert not set(splits["train"]["image"]) & set(splits["test"]["image"])
    with Image.open(project / "data/clean/images" / f"{splits['test']['image'][0]}.png") as crop:
        assert crop.size == (64, 64)
    for plot in ("plots/clean/class_distribution.png", "plots/explore/average_images.png",
                 "plots/explore/pixel_distribution.png"):
        assert (project / plot).stat().st_size > 1000
    assert "/raw" in (project / "data/.gitignore").read_text().split()
    assert "up to date" in run(["dvc", "repro", "fetch", "clean", "explore"], project).stdout


def test_corrupt_image_is_named_or_skipped_when_allowed(project):
    stage(project, "fetch")
    broken = project / "data/raw/JPEGImages/BloodImage_00005.jpg"
    broken.write_bytes(broken.read_bytes()[:300])  # truncated JPEG
    result = stage(project, "clean", check=False)
    assert result.returncode == 2 and "BloodImage_00005.jpg: cannot read image" in result.stderr
    assert "skip_corrupt" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "data/clean").exists() and not (project / "metrics/data.json").exists()
    set_params(project, {"clean": {"skip_corrupt": True}})
    stage(project, "clean")
    summary = json.loads((project / "metrics/data.json").read_text())
    assert summary["dropped"]["corrupt_image"] == 1 and summary["clean"]["total"] == 39


def test_bad_clean_parameter_is_one_line(project):
    stage(project, "fetch")
    set_params(project, {"data": {"folds": 0}, "clean": {"test_size": 0.6}})
    result = stage(project, "clean", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: params.yaml: clean.test_size: must be less than 0.5, got 0.6"
    assert not (project / "data/clean").exists()


@pytest.mark.skipif(not SHARED_BCCD.is_dir(), reason="the real BCCD copy is not on this machine")
def test_real_bccd_copy_cleans_to_347_images(project):
    manifest = sources.read_manifest(project / "data/bccd.sha256")
    sources.verify_manifest(SHARED_BCCD, manifest)  # the committed manifest describes the real data
    set_params(project, {"data": {"source": str(SHARED_BCCD)}})
    stage(project, "fetch")
    stage(project, "clean")
    summary = json.loads((project / "metrics/data.json").read_text())
    assert summary["clean"] == {"NEUTROPHIL": 206, "EOSINOPHIL": 88, "LYMPHOCYTE": 33, "MONOCYTE": 20, "total": 347}
    assert summary["test"]["total"] == 70  # fold 0 of 5
    assert summary["box_source"]["voc"] + summary["box_source"]["stain"] == 347
    located = json.loads((project / "metrics/locator.json").read_text())
    assert located["images"] == 358  # every photograph with a WBC box, labelled or not
    assert located["iou_at_least_0.5"] > 0.9  # a guard against a broken locator, far below the measured figure
