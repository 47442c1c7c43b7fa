"""params.yaml against its declared schema: every problem of a stage's sections in one line, before any work."""
import copy
import sys

import pytest
import yaml

from bloodcells.config import schema
from bloodcells.core.errors import UserError
from conftest import ROOT, run, set_params

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
ALL = ["data", "fetch", "clean", "explore", "train", "models", "finetune", "evaluate"]


def problems(changes, sections=ALL, remove=(), data_classes=None):
    params = copy.deepcopy(PARAMS)
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[key] = value
    for dotted in remove:
        *parents, key = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        del node[key]
    with pytest.raises(UserError) as raised:
        schema.validate(params, sections, data_classes=data_classes)
    return str(raised.value)


def test_the_projects_params_pass():
    schema.validate(PARAMS, ALL)


@pytest.mark.parametrize("changes, message", [
    ({"train.epoch": 3}, "train.epoch: unknown key (did you mean epochs?)"),
    ({"models.resnet.image_szie": 96}, "models.resnet.image_szie: unknown key (did you mean image_size?)"),
    ({"models.resnet.learning_rate": 0.1}, "unknown key (known keys: arch, seed, device"),
    ({"train.epochs": "ten"}, "train.epochs: must be a valid integer, got 'ten'"),
    ({"train.epochs": 3.5}, "train.epochs: must be a valid integer, got 3.5"),
    ({"train.lr": True}, "train.lr: must be a number, got True"),
    ({"clean.margin": "0.15"}, "clean.margin: must be a number, got '0.15'"),
    ({"train.pretrained": "yes"}, "train.pretrained: must be a valid boolean, got 'yes'"),
    ({"models.resnet.epochs": 0}, "models.resnet.epochs: must be greater than 0, got 0"),
    ({"train.ema": 1.0}, "train.ema: must be less than 1, got 1.0"),
    ({"clean.test_size": 0.6}, "clean.test_size: must be less than 0.5, got 0.6"),
    ({"models.resnet.arch": "resnet101"}, "models.resnet.arch: must be 'resnet18', 'resnet34' or 'resnet50'"),
    ({"train.optimizer": "lion"}, "train.optimizer: must be 'adamw', 'adam' or 'sgd', got 'lion'"),
    ({"train.device": "gpu"}, "train.device: must be 'auto', 'cpu' or 'cuda', got 'gpu'"),
    ({"train.precision": "fp16"}, "train.precision: must be 'auto', 'fp32' or 'bf16', got 'fp16'"),
    ({"models.vgg": {"arch": "vgg16"}}, "models.vgg: unknown model (use resnet, efficientnet, alexnet)"),
    ({"models.resnet.stem_stride": 2}, "models.resnet.stem_stride: unknown key"),  # an AlexNet-only option
    ({"models.alexnet.stem_stride": 3}, "models.alexnet.stem_stride: must be 4 or 2, got 3"),
    ({"models.resnet.epochs": None}, "models.resnet.epochs: must be a valid integer, got None"),
    ({"clean.oversample": {"EOSINOPHIL": 0.5}}, "clean.oversample: factors must be numbers >= 1"),
    ({"data.synthetic.size": [640]}, "data.synthetic.size: list should have at least 2 items"),
    ({"fetch.retries": 0}, "fetch.retries: must be greater than or equal to 1, got 0"),
    ({"data.fold": 5}, "data.fold: must be from 0 to data.folds - 1 = 4, got 5"),
    ({"data.folds": 1}, "data.folds: must be 0 (one random split) or at least 2, got 1"),
    ({"clean.crop_side": 8}, "clean.crop_side: must be greater than or equal to 16, got 8"),
    ({"clean.crop_side": 120.5}, "clean.crop_side: must be a valid integer, got 120.5"),
    ({"clean.edge_cells": "wrap"}, "clean.edge_cells: must be 'pad' or 'shift', got 'wrap'"),
    ({"clean.undersample": {"NEUTROPHIL": 1}}, "clean.undersample.NEUTROPHIL: must be less than 1, got 1"),
    ({"data.synthetic.per_class": 2}, "data.synthetic.per_class: must be greater than or equal to 3, got 2"),
    ({"finetune.lr_scale": 0}, "finetune.lr_scale: must be greater than 0, got 0"),
    ({"finetune.epochs": 2.5}, "finetune.epochs: must be a valid integer, got 2.5"),
    ({"finetune.ema": 1}, "finetune.ema: must be less than 1, got 1"),
    ({"finetune.frozen_share": 1}, "finetune.frozen_share: must be less than 1, got 1"),
])
def test_each_kind_of_problem_is_named_with_its_key_and_value(changes, message):
    assert message in problems(changes)


def test_missing_keys_and_sections_are_named():
    assert "clean.margin: missing (add it" in problems({}, remove=["clean.margin"])
    assert "explore: missing section" in problems({}, remove=["explore"])


def test_every_problem_of_the_sections_is_reported_at_once():
    message = problems({"train.epoch": 3, "train.lr": "ten", "models.resnet.arch": "resnet101"},
                       sections=["train", "models.resnet"])
    assert message.startswith("params.yaml: 3 problems: ") and "\n" not in message
    assert "train.epoch" in message and "train.lr" in message and "models.resnet.arch" in message


def test_a_stage_checks_only_its_own_sections():
    schema.validate({**copy.deepcopy(PARAMS), "evaluate": {"tta": "maybe"}}, ["train", "models.resnet"])


def test_a_stage_reports_every_problem_in_one_line_and_writes_nothing(project):
    set_params(project, {"train": {"epoch": 3, "lr": "ten"}, "models": {"resnet": {"batch_size": 3.5}}})
    result = run([sys.executable, "src/train.py", "resnet"], project, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: params.yaml: 3 problems: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project / "models/resnet.pt").exists()


def test_params_that_are_not_yaml_are_one_line(project):
    (project / "params.yaml").write_text("train:\n  epochs: [3\n")
    result = run([sys.executable, "src/fetch.py"], project, check=False)
    assert result.returncode == 2 and "params.yaml: not valid YAML at line" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_key_given_twice_is_one_line_naming_it_and_both_lines(project):
    text = (project / "params.yaml").read_text()
    lines = text.splitlines()
    data_line = lines.index("data:")
    seed_line = next(n for n in range(data_line, len(lines)) if lines[n].strip().startswith("seed:"))
    lines.insert(data_line + 1, "  seed: 7")
    (project / "params.yaml").write_text("\n".join(lines) + "\n")
    result = run([sys.executable, "src/clean.py"], project, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"key 'seed' is given twice, on lines {data_line + 2} and {seed_line + 2}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


BCCD_DATA = ["NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "BASOPHIL"]


@pytest.mark.parametrize("changes,message", [
    ({"clean.drop_classes": [], "clean.oversample": {"BASO": 2}}, "clean.oversample: 'BASO' is not a class of the data (did you mean BASOPHIL?)"),
    ({"clean.drop_classes": ["basophil"]}, "clean.drop_classes: 'basophil' is not a class of the data (did you mean BASOPHIL?)"),
    ({"clean.undersample": {"NEUTROPHILS": 0.2}}, "clean.undersample: 'NEUTROPHILS' is not a class of the data (did you mean NEUTROPHIL?)"),
    ({"clean.rename": {"EOSIN": "eosinophil"}}, "clean.rename: 'EOSIN' is not a class of the data (did you mean EOSINOPHIL?)"),
    ({"clean.classes": ["NEUTROPHIL", "PLATELET"]}, "clean.classes: 'PLATELET' is not a class of the data"),
    ({"clean.rename": {"NEUTROPHIL": "neutrophil"}, "clean.undersample": {"NEUTROPHIL": 0.1}},
     "clean.undersample: 'NEUTROPHIL' is not a class of the data (did you mean neutrophil?)"),  # named after rename
])
def test_keys_that_name_classes_are_checked_against_the_datas_classes(changes, message):
    assert message in problems(changes, ["clean"], data_classes=BCCD_DATA)


def test_class_names_pass_where_they_name_the_datas_classes():
    params = copy.deepcopy(PARAMS)
    params["clean"] |= {"rename": {"NEUTROPHIL": "neutrophil"}, "undersample": {"neutrophil": 0.1},
                        "classes": ["neutrophil", "EOSINOPHIL"], "oversample": {"EOSINOPHIL": 2}}
    schema.validate(params, ["clean"], data_classes=BCCD_DATA)


def test_bccds_recipe_on_class_folders_is_one_line_naming_the_recipe_to_use_and_no_class_hint():
    params = copy.deepcopy(PARAMS)  # BCCD's recipe: locator voc, a rule for NEUTROPHIL
    with pytest.raises(UserError) as raised:
        schema.validate(params, ["clean"], data_classes=["basophil", "neutrophil"], layout="class-folders")
    message = str(raised.value)
    assert "clean.locator: voc with crop: wbc (BCCD's recipe" in message and "run with -S dataset=folders" in message
    assert "did you mean" not in message and "\n" not in message
    schema.validate(params, ["clean"], layout="dataset-master")  # BCCD's own layout
    centred = copy.deepcopy(params)
    centred["clean"] |= {"crop": "centre", "undersample": None}  # the locator is unused with a centred crop
    schema.validate(centred, ["clean"], data_classes=["basophil", "neutrophil"], layout="class-folders")
    params["clean"] |= {"locator": "stain", "undersample": None}  # a smear photograph per class folder
    schema.validate(params, ["clean"], data_classes=["basophil", "neutrophil"], layout="class-folders")


def test_the_class_folder_recipe_names_no_class_and_pbcs_is_it(tmp_path):
    from dvc.utils.hydra import compose_and_dump
    composed = {}
    for recipe in ("folders", "pbc", "bccd"):
        compose_and_dump(tmp_path / f"{recipe}.yaml", str(ROOT / "conf"), None, "config", "", [f"dataset={recipe}"])
        composed[recipe] = yaml.safe_load((tmp_path / f"{recipe}.yaml").read_text())
    assert composed["folders"] == composed["pbc"]
    clean = composed["folders"]["clean"]
    assert clean["undersample"] is None and clean["oversample"] == "none" and clean["crop"] == "centre"
    assert not clean["drop_classes"] and not clean["rename"] and not clean["classes"]
    assert composed["bccd"]["clean"]["locator"] == "voc"  # what the check above takes for BCCD's recipe
