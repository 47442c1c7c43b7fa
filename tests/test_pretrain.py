"""Starting weights learnt on another dataset: the classes it learns, a head for other classes replaced (and said) or
for the same classes in another order reordered, and the stages pretrain@<model> through the real DVC pipeline
(`-S start=pbc`), declared so that changing the weights' source retrains the models and nothing before them."""
import json
import re
import shlex

import pytest
import torch
import yaml

from bloodcells.training import pretraining
from bloodcells.training.recipe import recipe
from bloodcells.config import schema
from bloodcells.core.errors import UserError
from bloodcells.models.inference import load_checkpoint
from bloodcells.models.factory import build_model, classification_head, load_weights
from conftest import ROOT, run, set_defaults, set_params
from test_class_folders import readme_command
from test_external import class_folder_set

CLASSES = ["NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE"]


def test_shared_classes_keep_the_target_s_order_and_all_adds_the_set_s_others_after_them():
    labels = ["LYMPHOCYTE", "platelet", "NEUTROPHIL", "basophil", "LYMPHOCYTE"]
    assert pretraining.training_classes(labels, CLASSES, "shared") == ["NEUTROPHIL", "LYMPHOCYTE"]
    assert pretraining.training_classes(labels, CLASSES, "all") == ["NEUTROPHIL", "LYMPHOCYTE", "basophil", "platelet"]


def test_a_set_sharing_fewer_than_two_classes_is_one_line():
    with pytest.raises(UserError, match=r"pretrain.source has 1 of the target's classes .*pretrain.rename"):
        pretraining.training_classes(["NEUTROPHIL", "platelet"], CLASSES, "shared")


def test_a_validation_share_too_small_for_every_class_is_one_line():
    with pytest.raises(UserError, match=r"pretrain.val_size 0.1: cannot hold out a validation image of every class"):
        pretraining.validation_split(torch.tensor([0] * 5 + [1] * 5 + [2] * 5), 0.1, 0)


def save_weights(path, model, classes):
    torch.save({"state_dict": model.state_dict(), "classes": classes, "mean": [0.5] * 3, "std": [0.2] * 3}, path)


def test_weights_for_other_classes_load_with_a_new_head_and_say_so(tmp_path, capsys):
    source = build_model("resnet", "resnet18", 64, num_classes=3)
    save_weights(tmp_path / "w.pt", source, ["NEUTROPHIL", "EOSINOPHIL", "platelet"])
    torch.manual_seed(1)
    target = build_model("resnet", "resnet18", 64, num_classes=4)
    fresh_head = target.fc.weight.clone()
    load_weights(target, tmp_path / "w.pt", "resnet", CLASSES)
    assert torch.equal(target.conv1.weight, source.conv1.weight)  # the body is the other set's
    assert torch.equal(target.fc.weight, fresh_head)  # the head is new
    said = capsys.readouterr().out
    assert "trained on NEUTROPHIL, EOSINOPHIL, platelet: its classification head is replaced" in said


@pytest.mark.parametrize("name,arch", [("resnet", "resnet18"), ("efficientnet", "efficientnet-b0"),
                                       ("alexnet", "alexnet")])
def test_a_head_for_the_same_classes_in_another_order_is_reordered_row_by_row(tmp_path, capsys, name, arch):
    options = {"feature_pool": 1, "stem_stride": 2, "batch_norm": True} if name == "alexnet" else {}
    source = build_model(name, arch, 64, num_classes=4, **options)
    theirs = ["eosinophil", "monocyte", "neutrophil", "lymphocyte"]  # another lab's names and order
    save_weights(tmp_path / "w.pt", source, theirs)
    target = build_model(name, arch, 64, num_classes=4, **options)
    load_weights(target, tmp_path / "w.pt", name, CLASSES)
    head = classification_head(target)
    weight = dict(target.named_parameters())[f"{head}.weight"]
    original = dict(source.named_parameters())[f"{head}.weight"]
    for row, label in enumerate(CLASSES):
        assert torch.equal(weight[row], original[theirs.index(label.lower())])
    assert "its class rows reordered to NEUTROPHIL, EOSINOPHIL, LYMPHOCYTE, MONOCYTE" in capsys.readouterr().out


def test_the_same_classes_in_the_same_order_load_whole_and_silently(tmp_path, capsys):
    source = build_model("resnet", "resnet18", 64, num_classes=4)
    save_weights(tmp_path / "w.pt", source, CLASSES)
    target = build_model("resnet", "resnet18", 64, num_classes=4)
    load_weights(target, tmp_path / "w.pt", "resnet", CLASSES)
    assert torch.equal(target.fc.weight, source.fc.weight) and capsys.readouterr().out == ""


def test_the_schema_wants_a_source_for_any_pretrained_model():
    settings = {"source": None, "models": ["resnet"], "classes": "shared", "epochs": 2, "val_size": 0.1}
    with pytest.raises(UserError, match=r"pretrain.source: not set, and models names resnet"):
        schema.validate({"pretrain": settings}, ("pretrain",))
    schema.validate({"pretrain": settings | {"models": []}}, ("pretrain",))  # the default: nothing to pretrain


def test_pretraining_trains_the_model_s_own_recipe_with_its_own_colour_jitter_unless_pretrain_sets_one():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"] |= {"colour_jitter": 0.1, "epochs": 30, "lr": 0.001}
    params["models"]["resnet"] = {"arch": "resnet18", "lr": 0.002}
    params["pretrain"] |= {"epochs": 10, "colour_jitter": None, "source": "/elsewhere"}
    own = recipe(schema.validate(params, ("train", "models", "pretrain")), "resnet", "pretrain")
    assert (own.colour_jitter, own.epochs, own.lr) == (0.1, 10, 0.002)
    params["pretrain"]["colour_jitter"] = 0.4
    assert recipe(schema.validate(params, ("train", "models", "pretrain")), "resnet", "pretrain").colour_jitter == 0.4
    settings = {"source": None, "models": [], "classes": "shared", "epochs": 2, "val_size": 0.1, "colour_jitter": 2}
    with pytest.raises(UserError, match=r"pretrain.colour_jitter: .*1"):
        schema.validate({"pretrain": settings}, ("pretrain",))


def test_start_from_another_set_through_the_pipeline(reproduced, tmp_path):
    project = reproduced  # after `dvc repro`
    lab = class_folder_set(tmp_path / "lab", per_class=8)
    set_defaults(project, {"pretrain": {"epochs": 1, "val_size": 0.25, "rename": {"lympho": "LYMPHOCYTE"}}})
    missing = run(["dvc", "exp", "run", "-S", "start=pbc"], project, check=False)
    assert missing.returncode != 0 and "pretrain@" in missing.stderr and "???" in missing.stderr
    command = readme_command("dvc exp run -n from-pbc -S start=pbc")  # the README's, as written
    assert "pretrain.source=/abs/path/PBC_dataset_normal_DIB" in command
    result = run(shlex.split(command.replace("/abs/path/PBC_dataset_normal_DIB", str(lab))), project)
    for model in ("resnet", "efficientnet", "alexnet"):
        assert f"Running stage 'pretrain@{model}'" in result.stdout and f"Running stage 'train_{model}'" in result.stdout
        # the lab shares three of the four classes: its head is for those three, so train_ starts a new one
        assert f"models.{model}.weights: weights/{model}/pretrain.pt: trained on NEUTROPHIL, EOSINOPHIL, " \
               "LYMPHOCYTE: its classification head is replaced" in result.stdout
        _, checkpoint = load_checkpoint(project / f"weights/{model}/pretrain.pt", model)
        assert checkpoint.classes == ["NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE"]
        assert checkpoint.crop["crop"] == "wbc" and checkpoint.crop["locator"] == "stain"
        described = json.loads((project / f"metrics/pretrain/{model}/data.json").read_text())
        assert described["left_out_classes"] == ["basophil"] and described["train"] + described["val"] == 24
        trained = json.loads((project / f"metrics/train/{model}/metrics.json").read_text())
        assert "selected_val_accuracy" in trained
    assert "Running stage 'clean'" not in result.stdout and "Running stage 'fetch'" not in result.stdout
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project).stdout
    assert "resnet: fine-tuning the learnt weights for" in result.stdout
    # a fine-tuning variant: training reruns, pretraining not
    set_params(project, {"finetune": {"lr_scale": 0.5, "frozen_share": 0.5}})
    stale = run(["dvc", "status"], project).stdout
    assert "train_resnet" in stale and "pretrain@" not in stale and "clean:" not in stale
    next(lab.glob("neutrophil/*.jpg")).unlink()  # the weights' source changed: pretraining and what follows rerun
    stale = run(["dvc", "status"], project).stdout
    assert "pretrain@resnet" in stale and "clean:" not in stale and "fetch:" not in stale
    assert "explore:" not in stale and "pretrain@efficientnet" in stale  # all of it, so one family's rerun suffices
    rerun = run(["dvc", "repro", "train_resnet"], project).stdout
    assert "Running stage 'pretrain@resnet'" in rerun and "Running stage 'train_resnet'" in rerun
    assert "Running stage 'clean'" not in rerun and "Running stage 'explore'" not in rerun
    assert re.search(r"resnet: the first \d+ of its \d+ weight layers keep their learnt weights", rerun)
