"""External test sets: another dataset's classes matched to the model's (by name, in any case, or renamed), the
classes the model lacks and the set lacks reported, the set cut as its own layout is cut, and the stage
external@<name> through the real DVC pipeline."""
from types import SimpleNamespace

import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from bloodcells.data import external_sets as external, synthetic
from bloodcells.config import schema
from bloodcells.core.errors import UserError
from conftest import run, set_params, stage

MODEL_CLASSES = ["NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE"]
MODEL_CROP = {"locator": "voc", "crop": "wbc", "margin": 0.15, "crop_side": None, "edge_cells": "pad",
              "fallback_box_size": 200, "image_size": 64}


def class_folder_set(root, per_class=6, seed=1):
    """Single-cell images in folders named as another lab might: a class the models lack (basophil), one under
    another name (lympho), none of MONOCYTE."""
    rng = np.random.default_rng(seed)
    drawn_as = {"basophil": "EOSINOPHIL", "eosinophil": "EOSINOPHIL", "lympho": "LYMPHOCYTE",
                "neutrophil": "NEUTROPHIL"}
    for folder, label in drawn_as.items():
        (root / folder).mkdir(parents=True)
        for n in range(per_class):
            image, (x0, y0, x1, y1) = synthetic.make_image(rng, label, 160, 120)
            image.crop((max(0, x0 - 10), max(0, y0 - 10), x1 + 10, y1 + 10)).save(root / folder / f"{folder}_{n}.jpg")
    return root


def test_classes_match_by_name_in_any_case_or_by_rename_and_the_rest_keep_their_own_name():
    mapping = external.class_mapping(["basophil", "eosinophil", "lympho", "neutrophil"], MODEL_CLASSES,
                                     {"lympho": "LYMPHOCYTE"}, "external.sets.lab")
    assert mapping == {"basophil": "basophil", "eosinophil": "EOSINOPHIL", "lympho": "LYMPHOCYTE",
                       "neutrophil": "NEUTROPHIL"}


def test_a_rename_of_a_class_the_set_does_not_have_is_one_line():
    with pytest.raises(UserError, match=r"external.sets.lab.rename: 'lymfo' is not a class of this set "
                                        r"\(did you mean lympho\?\)"):
        external.class_mapping(["lympho", "neutrophil"], MODEL_CLASSES, {"lymfo": "LYMPHOCYTE"}, "external.sets.lab")


def test_the_score_counts_known_classes_and_reports_the_unknown_and_the_missing():
    labels = ["NEUTROPHIL", "NEUTROPHIL", "EOSINOPHIL", "basophil", "basophil", "basophil"]
    called = [0, 1, 1, 1, 1, 0]  # two of three known right; basophils called EOSINOPHIL twice, NEUTROPHIL once
    probabilities = np.full((len(labels), 4), 0.1)
    probabilities[np.arange(len(labels)), called] = 0.7
    metrics = external.score(labels, probabilities, MODEL_CLASSES)
    assert (metrics["n_total"], metrics["n_correct"], metrics["images"], metrics["scored"]) == (3, 2, 6, 3)
    assert metrics["unknown_classes"] == {"basophil": {"images": 3, "predicted_as": {
        "NEUTROPHIL": 1, "EOSINOPHIL": 2, "LYMPHOCYTE": 0, "MONOCYTE": 0}}}
    assert metrics["missing_classes"] == ["LYMPHOCYTE", "MONOCYTE"]
    assert metrics["per_class"]["MONOCYTE"]["support"] == 0 and metrics["roc_auc"]["MONOCYTE"] is None


def test_a_set_with_no_class_the_model_knows_is_one_line():
    with pytest.raises(UserError, match="no image of this set is of a class the model knows"):
        external.score(["platelet", "ig"], np.full((2, 4), 0.25), MODEL_CLASSES)


def a_set(**settings):
    """One validated entry of external.sets."""
    return schema.ExternalSetParams(**{"source": "/elsewhere", **settings})


def test_a_set_is_cut_as_its_layout_is_cut_unless_it_says_otherwise():
    assert external.crop_settings(MODEL_CROP, "class-folders", a_set())["crop"] == "centre"
    photographs = external.crop_settings({**MODEL_CROP, "crop": "centre", "locator": "stain"}, "dataset-master", a_set())
    assert (photographs["crop"], photographs["locator"], photographs["image_size"]) == ("wbc", "voc", 64)
    assert external.crop_settings(MODEL_CROP, "dataset-master", a_set(locator="stain", crop_side=150,
                                                                       margin=None)) == \
        {**MODEL_CROP, "locator": "stain", "crop_side": 150}


def test_a_dataset_master_set_is_read_with_its_boxes_and_its_extra_rows_dropped(tmp_path):
    synthetic.generate(tmp_path / "bccd", per_class=3, size=(160, 120), seed=3)
    found = external.read_set("other", a_set(source=str(tmp_path / "bccd")),
                              [MODEL_CROP, {**MODEL_CROP, "image_size": 48}], MODEL_CLASSES)
    assert found.layout == "dataset-master" and len(found.names) == 12
    assert sorted(set(found.labels)) == sorted(MODEL_CLASSES)
    assert found.dropped["empty"] == 1 and found.dropped["multiple"] == 1  # the synthetic labels.csv's odd rows
    assert sorted(crops.shape[-1] for crops in found.crops.values()) == [48, 64]  # one cut per model crop size
    assert external.images_for(found, MODEL_CROP, a_set()).shape == (12, 3, 64, 64)


def test_external_settings_are_checked_by_the_schema():
    with pytest.raises(UserError) as error:
        schema.validate({"external": {"sets": {"kaggle": {"source": "bccd", "crop": "box", "lables": {}}}}},
                        ("external",))
    said = str(error.value)
    assert "external.sets.kaggle.source: must be a local folder or zip" in said
    assert "external.sets.kaggle.crop: must be 'wbc', 'centre' or 'none', got 'box'" in said
    assert "external.sets.kaggle.lables: unknown key" in said
    schema.validate({"external": {"sets": {}}}, ("external",))  # the default: no set, nothing to run


def test_an_external_set_through_the_pipeline_reports_what_it_cannot_score(reproduced, tmp_path):
    project = reproduced  # after `dvc repro`
    data = class_folder_set(tmp_path / "lab")
    result = run(["dvc", "exp", "run", "-S", f"+external.sets.lab.source={data}",
                  "-S", "+external.sets.lab.rename={lympho: LYMPHOCYTE}", "-S", "+external.sets.lab.adapt=batch_norm"],
                 project)
    assert "Running stage 'external@lab'" in result.stdout
    assert "Running stage 'train_" not in result.stdout  # the trained models are scored, not retrained
    described = json.loads((project / "metrics/external/lab/data.json").read_text())
    assert described["layout"] == "class-folders" and described["images"] == 24
    assert described["classes"]["lympho"] == {"images": 6, "scored_as": "LYMPHOCYTE", "known_to_the_model": True}
    assert described["classes"]["basophil"]["known_to_the_model"] is False
    assert described["missing_classes"] == ["MONOCYTE"] and described["crop"][0]["crop"] == "centre"
    for model in ("resnet", "efficientnet", "alexnet"):
        metrics = json.loads((project / f"metrics/external/lab/{model}.json").read_text())
        assert metrics["n_total"] == 18 and metrics["unknown_classes"]["basophil"]["images"] == 6
        assert sum(metrics["unknown_classes"]["basophil"]["predicted_as"].values()) == 6
        assert f"{model} on lab: accuracy" in result.stdout
        predictions = pd.read_csv(project / f"metrics/external/lab/predictions/{model}.csv")
        assert len(predictions) == 24 and set(predictions["given"]) == {"basophil", "eosinophil", "lympho", "neutrophil"}
        for picture in ("confusion", "errors"):
            assert (project / f"plots/external/lab/{model}_{picture}.png").stat().st_size > 0
    record = json.loads((project / "metrics/external/lab/transfer.json").read_text())
    for model in ("resnet", "efficientnet", "alexnet"):
        own = json.loads((project / f"metrics/evaluate/{model}.json").read_text())
        scored = json.loads((project / f"metrics/external/lab/{model}.json").read_text())
        assert record["models"][model] == {
            "own_test_accuracy": own["accuracy"], "own_test_ci95": own["accuracy_ci95"],
            "own_test_images": own["n_total"], "lab_accuracy": scored["accuracy"], "lab_ci95": scored["accuracy_ci95"],
            "lab_images": 18, "fall": round(own["accuracy"] - scored["accuracy"], 4)}
    assert (project / "plots/external/lab/transfer.png").stat().st_size > 0
    assert "metrics/external/lab/transfer.json" in run(["dvc", "metrics", "show"], project).stdout
    assert "basophil (6, not a class of the model): called" in result.stdout
    assert "no images of MONOCYTE" in result.stdout
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project).stdout
    next(data.glob("neutrophil/*.jpg")).unlink()  # the copy changed: only its scores are stale
    stale = run(["dvc", "status"], project).stdout
    assert "external@lab" in stale and "train_" not in stale and "evaluate" not in stale
    shown = run(["dvc", "plots", "show", "--json"], project).stdout
    assert "metrics/external/lab/predictions/resnet.csv" in shown and "plots/external/lab/resnet_errors.png" in shown


def test_a_set_the_params_do_not_name_is_one_line(project):
    result = run([sys.executable, "src/external.py", "nowhere"], project, check=False)
    assert result.returncode != 0
    assert "external.sets has no set 'nowhere' (it has: none)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_set_is_standardised_by_the_model_s_statistics_or_with_statistics_own_by_its_own():
    inputs = torch.stack([torch.full((3, 4, 4), 51, dtype=torch.uint8), torch.full((3, 4, 4), 153, dtype=torch.uint8)])
    checkpoint = SimpleNamespace(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    assert external.statistics(inputs, checkpoint, a_set()) == (checkpoint.mean, checkpoint.std)
    mean, std = external.statistics(inputs, checkpoint, a_set(statistics="own"))
    assert mean == pytest.approx([0.4] * 3) and std == pytest.approx([0.2] * 3, rel=0.02)
    with pytest.raises(UserError, match=r"external.sets.lab.statistics: must be 'model' or 'own'"):
        schema.validate({"external": {"sets": {"lab": {"source": "/x", "statistics": "stain"}}}}, ("external",))


def transfer_benchmark():
    """benchmarks/transfer.py as a module (benchmarks/ is not a package)."""
    import importlib.util
    from conftest import ROOT
    spec = importlib.util.spec_from_file_location("transfer", ROOT / "benchmarks" / "transfer.py")
    transfer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(transfer)
    return transfer


def test_the_transfer_benchmarks_options_leave_the_checkpoints_after_them_alone():
    """--cut and --rename take one value each, repeated, so checkpoints written after them stay checkpoints."""
    transfer = transfer_benchmark()
    args = transfer.parse_args(["--set", "s", "--cut", "stain-located", "--rename", "lympho=LYMPHOCYTE",
                                "a.pt", "b.pt"])
    assert args.checkpoints == ["a.pt", "b.pt"]
    assert args.cut == ["stain-located"] and args.rename == ["lympho=LYMPHOCYTE"]
    assert transfer.parse_args(["--set", "s", "a.pt"]).cut == sorted(transfer.CUTS)


def test_the_transfer_benchmark_can_restrict_an_answer_to_the_sets_classes():
    transfer = transfer_benchmark()
    probabilities = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    restricted = transfer.among_classes(probabilities, ["A", "B", "ig"], {"A", "B"})
    np.testing.assert_allclose(restricted, [[1 / 3, 2 / 3, 0.0], [0.625, 0.375, 0.0]])
    assert transfer.parse_args(["--set", "s", "--among-set-classes", "a.pt"]).among_set_classes


def test_adabn_gives_the_batch_norms_the_sets_statistics_and_keeps_the_weights_and_the_model():
    from bloodcells.models.adaptation import adapt_batch_norm
    from bloodcells.models.factory import build_model
    torch.manual_seed(0)
    model = build_model("resnet", "resnet18", 32, num_classes=4).eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    shifted = torch.randint(150, 256, (40, 3, 32, 32), dtype=torch.uint8)  # another stain: brighter, narrower
    adapted, done = adapt_batch_norm(model, shifted, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), batch_size=16)
    assert done and all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    first = adapted.bn1  # its input is the first convolution's output on the standardised images
    with torch.no_grad():
        inputs = (shifted.float() / 255 - 0.5) / 0.25
        expected = model.conv1(inputs).mean(dim=(0, 2, 3))
    assert torch.allclose(first.running_mean, expected, atol=1e-4)
    changed = [key for key, value in adapted.state_dict().items() if not torch.equal(before[key], value)]
    assert changed and all(key.endswith(("running_mean", "running_var", "num_batches_tracked")) for key in changed)
    assert not adapted.training
    grouped = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
    assert adapt_batch_norm(grouped, shifted, (0.5,) * 3, (0.25,) * 3) == (grouped, False)


def test_adapt_is_checked_by_the_schema():
    with pytest.raises(UserError, match="external.sets.lab.adapt: must be 'none' or 'batch_norm', got 'adabn'"):
        schema.validate({"external": {"sets": {"lab": {"source": "bccd", "adapt": "adabn"}}}}, ("external",))


def test_a_sets_folds_are_the_folds_its_own_pipeline_tests(reproduced):
    """BCCD's folds 0-1 chosen by, 2-4 reported on (docs/cross_laboratory.md): the set's fold 0 is the very test split
    its own pipeline makes with data.fold 0."""
    project = reproduced  # a dataset-master copy in data/raw, split by clean into data/clean with data.fold 0 of 5
    set_params(project, {"external": {"sets": {"self": {"source": str(project / "data/raw"), "folds": [0]}}}})
    result = stage(project, "external", "self")
    tested = set(pd.read_csv(project / "data/clean/test.csv")["image"])
    for model in ("resnet", "efficientnet", "alexnet"):
        assert set(pd.read_csv(project / f"metrics/external/self/predictions/{model}.csv")["image"]) == tested
    described = json.loads((project / "metrics/external/self/data.json").read_text())
    assert described["images"] == len(tested) and described["dropped"]["other_folds"] == 4 * len(tested)
    assert f"/{len(tested)}, 95% CI" in result.stdout  # every model scored on those images alone
    set_params(project, {"external": {"sets": {"self": {"folds": [5]}}}})
    refused = stage(project, "external", "self", check=False)
    assert refused.returncode != 0 and "folds: each must be from 0 to fold_count - 1 = 4, got [5]" in refused.stderr
