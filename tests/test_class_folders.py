"""Class-folder datasets (PBC's layout): recognised in a folder or a zip, their data problems said and counted, and
a 5-class dataset through the real DVC pipeline, with the classes coming from the data."""
import json
import shlex
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from bloodcells.models import checkpoints
from bloodcells.data import layouts, sources, synthetic
from bloodcells.data.layouts import class_folders
from conftest import ROOT, run, set_params

SHARED_PBC = ROOT.parent / "shared" / "data" / "pbc"
CLASSES = ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"]  # sorted, as the folders
DRAWN_AS = {"basophil": "EOSINOPHIL", "eosinophil": "EOSINOPHIL", "lymphocyte": "LYMPHOCYTE",
            "monocyte": "MONOCYTE", "neutrophil": "NEUTROPHIL"}


def single_cell_dataset(root, per_class=10, seed=0):
    """PBC-like data: <root>/<class>/<name>, one centred cell per image, odd sizes and modes, and the quirks of the
    published zip: a .DS_Store saved as .jpg, a hidden file, a duplicate within a class, one image under two
    classes, a nested folder and an empty class folder."""
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        folder = root / label
        folder.mkdir(parents=True)
        for n in range(per_class):
            image, (x0, y0, x1, y1) = synthetic.make_image(rng, DRAWN_AS[label], 160, 120)
            cell = image.crop((max(0, x0 - 10), max(0, y0 - 10), x1 + 10, y1 + 10)).resize((70 + n % 3, 72))
            if n == 1:
                cell.convert("L").save(folder / f"{label[:2].upper()}_{n}.png")
            elif n == 2:
                cell.convert("RGBA").save(folder / f"{label[:2].upper()}_{n}.png")
            else:
                cell.save(folder / f"{label[:2].upper()}_{n}.jpg", quality=90)
    (root / "neutrophil" / ".DS_169665.jpg").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (root / "monocyte" / "notes.jpg").write_bytes(b"not an image at all")
    (root / "basophil" / "BA_copy.jpg").write_bytes((root / "basophil" / "BA_3.jpg").read_bytes())
    (root / "neutrophil" / "NE_twice.jpg").write_bytes((root / "eosinophil" / "EO_4.jpg").read_bytes())
    (root / "lymphocyte" / "more").mkdir()
    (root / "lymphocyte" / "LY_5.jpg").rename(root / "lymphocyte" / "more" / "LY_5.jpg")
    (root / "empty").mkdir()
    return root


def zipped(folder, path, top="PBC_dataset_normal_DIB"):
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, f"{top}/{file.relative_to(folder).as_posix()}")
    return path


def test_a_class_folder_zip_is_recognised_one_level_down_and_copied(tmp_path):
    data = single_cell_dataset(tmp_path / "data")
    archive = zipped(data, tmp_path / "PBC_dataset_normal_DIB.zip")
    with zipfile.ZipFile(archive) as opened:
        layout, root = layouts.recognise(opened.namelist())
    assert layout is class_folders and root == "PBC_dataset_normal_DIB/"
    dest = tmp_path / "raw"
    dest.mkdir()
    assert sources.import_local(archive, dest) == "class-folders"
    assert layouts.detect(dest) is class_folders
    assert sorted(p.name for p in dest.iterdir()) == CLASSES  # the empty folder holds no file to copy


def test_the_index_leaves_out_non_images_and_duplicates_and_says_why(tmp_path):
    data = single_cell_dataset(tmp_path / "data")
    (data / "empty" / ".hidden").write_text("x")
    notes = []
    index, data_classes, counts = class_folders.read_index(data, notes)
    assert data_classes == CLASSES
    assert counts == {"hidden_file": 2, "not_an_image": 1, "duplicate_in_class": 1, "duplicate_across_classes": 2}
    assert "EO_4" not in set(index["image"]) and "NE_twice" not in set(index["image"])  # one label is wrong
    assert ("BA_3" in set(index["image"])) != ("BA_copy" in set(index["image"]))  # one copy kept
    assert index["image"].is_unique and set(index["category"]) == set(CLASSES)
    assert "lymphocyte/more/LY_5.jpg" in set(index["path"])
    said = " | ".join(notes)
    for words in ("file(s) that are not images skipped, e.g. monocyte/notes.jpg", "under two classes left out",
                  "within a class left out", "empty/: no images in this class folder", "sub-folders"):
        assert words in said, words


def readme_command(start):
    """The README's command line that begins with `start`."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"one README line should start with {start!r}"
    return lines[0]


def test_a_five_class_dataset_through_the_readmes_pbc_command_as_written(project, tmp_path):
    archive = zipped(single_cell_dataset(tmp_path / "data", per_class=12), tmp_path / "PBC_dataset_normal_DIB.zip")
    command = readme_command("dvc exp run -n pbc -S dataset=pbc")
    assert "data.source=/path/to/PBC_dataset_normal_DIB.zip" in command  # the one thing the user fills in
    result = run(shlex.split(command.replace("/path/to/PBC_dataset_normal_DIB.zip", str(archive))), project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["data"]["source"] == str(archive) and params["clean"]["crop"] == "centre"
    assert params["clean"]["undersample"] is None
    assert json.loads((project / "data/clean/crop.json").read_text())["crop"] == "centre"
    assert "pbc" in run(["dvc", "exp", "ls", "--name-only"], project).stdout.split()
    assert "(layout: class-folders)" in result.stdout
    assert json.loads((project / "data/clean/classes.json").read_text())["classes"] == CLASSES
    summary = json.loads((project / "metrics/data.json").read_text())
    assert summary["layout"] == "class-folders" and summary["dropped"]["not_an_image"] == 1
    assert summary["dropped"]["duplicate_across_classes"] == 2 and summary["clean"]["total"] == 12 * 5 + 2 - 2 - 1
    for name in ("resnet", "efficientnet", "alexnet"):
        checkpoint = checkpoints.read(project / f"models/{name}.pt")
        assert checkpoint["classes"] == CLASSES
        metrics = json.loads((project / f"metrics/evaluate/{name}.json").read_text())
        assert list(metrics["per_class"]) == CLASSES and np.array(metrics["confusion_matrix"]).shape == (5, 5)
        header = (project / f"metrics/evaluate/predictions/{name}.csv").read_text().splitlines()[0]
        assert header == "image,actual,predicted," + ",".join(f"p_{c}" for c in CLASSES)
        assert (project / f"plots/evaluate/{name}_pairs.png").is_file()
    compared = (project / "metrics/compare.md").read_text()
    assert "reference accuracy" not in compared  # the reference scored BCCD
    per_class_header = compared.split("Sensitivity per class")[1].splitlines()[2]
    assert per_class_header.startswith("| model | ") and all(f"| {c} (" in per_class_header for c in CLASSES)
    assert "Hardest pairs" in compared and compared.count("\n- resnet: ") == 1
    one = next((tmp_path / "data" / "monocyte").glob("*.jpg"))
    predicted = run([sys.executable, "src/predict.py", str(one), "--model", "models/resnet.pt", "--out",
                     str(tmp_path / "one.csv")], project)
    assert predicted.stdout.split(": ")[1].split()[0] in CLASSES and "(whole)" in predicted.stdout
    row = pd.read_csv(tmp_path / "one.csv").iloc[0]
    assert sum(row[f"p_{c}"] for c in CLASSES) == pytest.approx(1, abs=1e-4)


def lab_export(root, per_class=10, seed=3):
    """A lab's own export: one folder per class under the lab's own names (neither PBC's nor BCCD's), one centred
    cell per image."""
    rng = np.random.default_rng(seed)
    for folder, drawn_as in {"Band cell": "NEUTROPHIL", "Blast": "LYMPHOCYTE", "Smudge": "MONOCYTE"}.items():
        (root / folder).mkdir(parents=True)
        for n in range(per_class):
            image, (x0, y0, x1, y1) = synthetic.make_image(rng, drawn_as, 160, 120)
            image.crop((max(0, x0 - 10), max(0, y0 - 10), x1 + 10, y1 + 10)).save(root / folder / f"{n:03d}.png")
    return root


def test_a_labs_export_through_the_readmes_line_as_written_and_not_through_bccds_recipe(project, tmp_path):
    export = lab_export(tmp_path / "export")
    command = readme_command("dvc exp run -n myexport -S dataset=folders")
    assert "data.source=/path/to/your/export" in command  # the one thing the user fills in
    args = shlex.split(command.replace("/path/to/your/export", str(export)))
    with_bccds_recipe = args[:args.index("dataset=folders") - 1] + args[args.index("dataset=folders") + 1:]
    refused = run(with_bccds_recipe, project, check=False)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "clean.locator: voc with crop: wbc (BCCD's recipe" in output
    assert "run with -S dataset=folders" in output and "did you mean" not in output
    assert not (project / "data/clean").exists()
    run(args, project)
    assert json.loads((project / "data/clean/classes.json").read_text())["classes"] == ["Band cell", "Blast", "Smudge"]
    assert json.loads((project / "data/clean/crop.json").read_text())["crop"] == "centre"
    assert yaml.safe_load((project / "params.yaml").read_text())["clean"]["undersample"] is None
    assert "myexport" in run(["dvc", "exp", "ls", "--name-only"], project).stdout.split()
    for name in ("resnet", "efficientnet", "alexnet"):
        assert checkpoints.read(project / f"models/{name}.pt")["classes"] == ["Band cell", "Blast", "Smudge"]


def test_classes_can_be_kept_and_renamed(project, tmp_path):
    data = single_cell_dataset(tmp_path / "data")
    set_params(project, {"data": {"source": str(data), "folds": 2},
                         "clean": {"crop": "centre", "undersample": None, "image_size": 64, "min_images": 5,
                                   "rename": {"neutrophil": "NEUTROPHIL", "eosinophil": "EOSINOPHIL"},
                                   "classes": ["NEUTROPHIL", "EOSINOPHIL", "monocyte"]}})
    run(["dvc", "repro", "clean"], project)
    assert json.loads((project / "data/clean/classes.json").read_text())["classes"] == \
        ["NEUTROPHIL", "EOSINOPHIL", "monocyte"]
    labels = pd.concat(pd.read_csv(project / f"data/clean/{s}.csv") for s in ("train", "val", "test"))["label"]
    assert set(labels) == {"NEUTROPHIL", "EOSINOPHIL", "monocyte"}
    set_params(project, {"clean": {"classes": ["NEUTROPHIL", "platelet"]}})
    result = run([sys.executable, "src/clean.py"], project, check=False)
    assert result.returncode == 2 and "clean.classes: 'platelet' is not a class of the data" in result.stderr


@pytest.mark.skipif(not SHARED_PBC.is_dir(), reason="the PBC copy of ../shared/data/pbc is not on this machine")
def test_the_real_pbc_copy_is_recognised_and_its_quirks_found(tmp_path):
    names = [p.relative_to(SHARED_PBC).as_posix() for p in SHARED_PBC.rglob("*") if p.is_file()]
    layout, root = layouts.recognise(names)
    assert layout is class_folders and root == "PBC_dataset_normal_DIB/"
    notes = []
    index, data_classes, counts = class_folders.read_index(SHARED_PBC / root, notes)
    assert len(data_classes) == 8 and counts["not_an_image"] + counts["hidden_file"] >= 1
    assert counts["duplicate_across_classes"] == 2  # EO_225902 = BNE_191112
    assert counts["duplicate_in_class"] == 10
    assert not {"EO_225902", "BNE_191112"} & set(index["image"])


def test_the_pbc_recipe_without_a_path_is_one_line_naming_the_key(project):
    tiny = project / "conf/tiny.yaml"  # the tiny settings over every composition: without their synthetic source
    settings = yaml.safe_load(tiny.read_text())
    del settings["data"]["source"]
    tiny.write_text("# @package _global_\n" + yaml.safe_dump(settings))
    result = run(["dvc", "exp", "run", "-S", "dataset=pbc"], project, check=False)
    assert result.returncode != 0
    assert "data.source: not set (??? in the dataset's recipe); give it: dvc exp run -S data.source=..." \
        in result.stdout + result.stderr
    assert not (project / "data/raw").exists()
