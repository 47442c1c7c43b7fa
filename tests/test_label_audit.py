"""The label audit (confident learning on the sweep's out-of-fold probabilities): planted label errors are found,
clean labels are left alone, and a class too small to audit is one line."""
import json
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bloodcells.core.errors import UserError
from bloodcells.evaluation.label_audit import MIN_PER_CLASS, audit
from conftest import ROOT, run, set_params

CLASSES = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]


def sweep_predictions(per_class=40, planted=None, seed=0, models=("resnet", "efficientnet", "alexnet")):
    """Predictions as the sweep keeps them: each image's true class gets most of the probability from every model;
    the images in `planted` ({image index: wrong label}) are given a wrong label."""
    rng = np.random.default_rng(seed)
    rows = []
    truths = [name for name in CLASSES for _ in range(per_class)]
    for i, truth in enumerate(truths):
        given = (planted or {}).get(i, truth)
        for model in models:
            p = rng.dirichlet(np.ones(len(CLASSES)) * 0.5) * 0.25
            p[CLASSES.index(truth)] += 0.75
            rows.append({"data_seed": 0, "fold": i % 5, "train_seed": -1, "model": model, "image": f"IMG_{i:04d}",
                         "actual": given, "predicted": CLASSES[int(p.argmax())],
                         **{f"p_{c}": round(float(v), 5) for c, v in zip(CLASSES, p)}})
    return pd.DataFrame(rows)


def test_planted_label_errors_are_found_ranked_first_with_the_true_class_suggested():
    rng = np.random.default_rng(1)
    planted = {}
    for c, truth in enumerate(CLASSES):  # 4 of each class's 40 images given another class's label (10 % noise)
        for i in rng.choice(range(40 * c, 40 * c + 40), 4, replace=False):
            planted[int(i)] = CLASSES[(c + 1 + int(i) % 3) % 4]
    table, noise, images, _ = audit(sweep_predictions(planted=planted), CLASSES)
    assert images == 160
    wanted = {f"IMG_{i:04d}": CLASSES[i // 40] for i in planted}
    found = [row for row in table.itertuples() if row.image in wanted]
    assert len(found) >= 0.75 * len(planted)  # cleanlab's noise-rate pruning finds most, not always all
    assert len(table) - len(found) <= 2  # and flags almost no clean image
    assert all(row.suggested == wanted[row.image] and row.given != row.suggested for row in found)
    assert all(row.models_agreeing == "alexnet,efficientnet,resnet" for row in found)
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert table["label_quality"].max() < 0.5
    assert set(noise) == set(CLASSES) and all(0.03 < v < 0.3 for v in noise.values())  # about 10 % planted


def test_clean_labels_give_few_or_no_suspects():
    table, noise, _, missed = audit(sweep_predictions(), CLASSES)
    assert len(table) <= 2
    assert max(noise.values()) < 0.05
    assert missed == set()  # every model answers every image right


def test_a_class_too_small_to_audit_is_one_line_naming_it():
    predictions = sweep_predictions()
    small = predictions[~predictions["image"].isin([f"IMG_{i:04d}" for i in range(80 + MIN_PER_CLASS - 1, 120)])]
    with pytest.raises(UserError, match=rf"fewer than {MIN_PER_CLASS} out-of-fold predictions: MONOCYTE \(4\)"):
        audit(small, CLASSES)


def test_predictions_of_other_classes_are_refused():
    with pytest.raises(UserError, match="lack the column"):
        audit(sweep_predictions(), [*CLASSES, "BASOPHIL"])


def test_the_audit_command_writes_the_ranked_list_the_counts_and_the_picture(tmp_path):
    planted = {i: CLASSES[(i // 40 + 1) % 4] for i in (1, 2, 3, 41, 42, 43, 81, 82, 83, 121, 122, 123)}
    predictions = sweep_predictions(planted=planted)
    (tmp_path / "records").mkdir()
    predictions.to_csv(tmp_path / "records/x_predictions.csv", index=False)
    (tmp_path / "data/clean/images").mkdir(parents=True)
    for i in range(160):
        Image.new("RGB", (32, 32), (200, 100, i)).save(tmp_path / f"data/clean/images/IMG_{i:04d}.png")
    result = run([sys.executable, str(ROOT / "src/audit.py"), "--record", "x", "--top", "6"], tmp_path)
    table = pd.read_csv(tmp_path / "label_issues/x.csv")
    summary = json.loads((tmp_path / "records/label_issues_x.json").read_text())
    assert summary["images"] == 160 and summary["suspects"] == len(table) > 0
    missed = summary["missed_by_every_model"]  # the planted images: every model answers their true class
    assert missed["images"] == len(planted) and missed["suspects"] == len(set(table["image"]) & {
        f"IMG_{i:04d}" for i in planted})
    assert set(summary["estimated_label_noise"]) == set(CLASSES)
    assert (tmp_path / "plots/audit/label_issues_x.png").stat().st_size > 1000
    assert f"{len(table)} of 160 images suspected of a wrong label" in result.stdout


def test_the_audit_without_a_sweep_is_one_line_saying_what_to_run(tmp_path):
    result = run([sys.executable, str(ROOT / "src/audit.py")], tmp_path, check=False)
    assert result.returncode == 2
    assert "records/defaults_predictions.csv not found: run the sweep first (python src/sweep.py run --folds 5)" \
        in result.stderr


def test_suspects_leave_the_training_split_only(project):
    run([sys.executable, "src/fetch.py"], project)
    run([sys.executable, "src/clean.py"], project)
    before = {split: pd.read_csv(project / f"data/clean/{split}.csv") for split in ("train", "val", "test")}
    tested = list(before["test"]["image"][:3])
    trained = list(before["train"]["image"].drop_duplicates()[:4])
    (project / "label_issues/audit.csv").write_text("image\n" + "\n".join(tested + trained + ["NOT_AN_IMAGE"]) + "\n")
    set_params(project, {"clean": {"leave_out_of_training": "audit"}})
    run([sys.executable, "src/clean.py"], project)
    after = {split: pd.read_csv(project / f"data/clean/{split}.csv") for split in ("train", "val", "test")}
    assert after["test"].equals(before["test"]) and after["val"].equals(before["val"])  # the same test fold
    assert not set(trained) & set(after["train"]["image"])
    cleaned = {path.stem for path in (project / "data/clean/images").glob("*.png")}
    held_out = set(before["val"]["image"]) | set(before["test"]["image"])
    assert set(after["train"]["image"]) <= cleaned - held_out - set(trained)  # the undersampling draws anew
    summary = json.loads((project / "metrics/data.json").read_text())
    assert summary["left_out_of_training"] == {"audit": "audit", "images": 4}
    set_params(project, {"clean": {"leave_out_of_training": "nothing-here"}})
    result = run([sys.executable, "src/clean.py"], project, check=False)
    assert result.returncode == 2 and "label_issues/nothing-here.csv not found; run python src/audit.py" \
        in result.stderr
