"""End to end: the real DVC pipeline on tiny synthetic data in a temporary git repository."""
import json
import sys

import pandas as pd
import pytest

from bloodcells.models import checkpoints
from bloodcells.core.atomic import atomic_dir, atomic_file
from conftest import git, run, set_params

MODELS = ("resnet", "efficientnet", "alexnet")
TIMINGS = ("train_seconds", "images_per_second", "seconds_per_epoch", "data_wait_share", "inference_ms_per_image")


def ran_stages(output):
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_full_pipeline_then_change_one_model(reproduced, reproduced_template):
    project, first_output = reproduced, reproduced_template[1]  # the copy of a project after its first `dvc repro`
    assert ran_stages(first_output) == {"fetch", "clean", "explore", "train_resnet", "train_efficientnet",
                                        "train_alexnet", "evaluate", "compare", "export"}
    compare = json.loads((project / "metrics/compare.json").read_text())
    evaluation_accuracy = {}
    assert compare["best_model"] in MODELS and set(compare["models"]) == set(MODELS)
    for name in MODELS:
        evaluation = json.loads((project / f"metrics/evaluate/{name}.json").read_text())
        evaluation_accuracy[name] = evaluation["accuracy"]
        assert evaluation["n_total"] == 8 and 0 <= evaluation["accuracy"] <= 1  # fold 0 of 5
        assert -1 <= evaluation["cohen_kappa"] <= 1 and 0 <= evaluation["expected_calibration_error"] <= 1
        assert set(evaluation["per_class"]) == {"NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE"}
        header = (project / f"metrics/evaluate/predictions/{name}.csv").read_text().splitlines()[0]
        assert header.startswith("image,actual,predicted,p_NEUTROPHIL")
        checkpoint_summary = json.loads((project / f"metrics/train/{name}/metrics.json").read_text())
        assert checkpoint_summary["best_epoch"] == 1 and checkpoint_summary["parameters"] > 0
        made_on = json.loads((project / f"metrics/train/{name}/machine.json").read_text())
        assert {"device", "cpu", "cpu_avx2", "cpu_avx512", "cpu_avx512_bf16", "cpu_amx_bf16", "native_bf16",
                "torch", "threads"} <= set(made_on) and made_on["precision"] in ("fp32", "bf16")
        assert made_on["precision"] == ("bf16" if made_on["native_bf16"] and name != "efficientnet" else "fp32")
        assert checkpoints.read(project / f"models/{name}.pt")["machine"] == made_on
        assert (project / f"models/{name}.onnx").stat().st_size > 0 and (project / f"models/{name}.md").is_file()
    compare_md = (project / "metrics/compare.md").read_text()
    assert "| resnet (resnet18)" in compare_md and "Trained on " in compare_md and "resnet " in compare_md
    git(project, "add", "-A")
    git(project, "commit", "-qm", "baseline")
    assert "up to date" in run(["dvc", "repro"], project).stdout
    clone = project.parent / "clone"
    git(project.parent, "clone", "-q", str(project), str(clone))  # no DVC cache, no remote: results from git
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], clone).stdout)
    for name in MODELS:
        assert shown[""]["data"][f"metrics/evaluate/{name}.json"]["data"]["accuracy"] == evaluation_accuracy[name]
    assert (clone / "metrics/compare.md").read_text() == (project / "metrics/compare.md").read_text()
    assert (clone / "metrics/evaluate/predictions/resnet.csv").is_file()
    git(project, "tag", "-a", "resnet@v1.0.0", "-m", "Registering artifact resnet version v1.0.0")  # as gto does
    fetched = project.parent / "fetched-resnet.pt"
    run(["dvc", "artifacts", "get", str(project), "resnet", "-o", str(fetched)], project.parent)
    assert fetched.read_bytes() == (project / "models/resnet.pt").read_bytes()
    card = project.parent / "resnet-card.md"  # the model card travels beside the model, from DVC
    git(project, "tag", "-a", "resnet-card@v1.0.0", "-m", "Registering artifact resnet-card version v1.0.0")
    run(["dvc", "artifacts", "get", str(project), "resnet-card", "-o", str(card)], project.parent)
    assert card.read_text() == (project / "models/resnet.md").read_text()

    git(project, "checkout", "-q", "-b", "longer-resnet")
    set_params(project, {"models": {"resnet": {"epochs": 2}}})
    second = run(["dvc", "repro"], project)
    assert ran_stages(second.stdout) == {"train_resnet", "evaluate", "compare", "export"}
    git(project, "add", "-A")
    git(project, "commit", "-qm", "resnet: 2 epochs")

    diff = json.loads(run(["dvc", "metrics", "diff", "main", "longer-resnet", "--json"], project).stdout)
    changed = {path for path, metrics in diff.items()
               if any(key.split(".")[-1] not in TIMINGS and change.get("diff") not in (0, None)
                      for key, change in metrics.items())}
    assert "metrics/train/resnet/metrics.json" in changed
    for name in ("efficientnet", "alexnet"):
        assert f"metrics/train/{name}/metrics.json" not in changed
        assert f"metrics/evaluate/{name}.json" not in changed  # deterministic inference, same weights
    # compare.json holds no wall-clock figures: only resnet's row and the pairs with resnet can move
    assert all("resnet" in key or key == "best_model" for key in diff.get("metrics/compare.json", {}))
    assert set(compare["pairs"]) == {"resnet_vs_efficientnet", "resnet_vs_alexnet", "efficientnet_vs_alexnet"}
    assert "McNemar" in (project / "metrics/compare.md").read_text()

    html = project / "plots_html"
    run(["dvc", "plots", "show", "-o", str(html)], project)
    page = (html / "index.html").read_text()
    for title in ("Validation accuracy", "Training loss", "resnet confusion matrix", "ROC (test split", "Risk-coverage"):
        assert title in page
    for image in ("class_distribution.png", "average_images.png", "models.png", "alexnet_confusion.png",
                  "roc.png", "reliability.png", "resnet_errors.png"):
        assert image in page
    diff_html = project / "plots_diff"
    run(["dvc", "plots", "diff", "main", "-o", str(diff_html)], project)
    assert "main" in (diff_html / "index.html").read_text()

    run(["dvc", "exp", "run", "-S", "models.resnet.lr=0.002", "--name", "fast-lr"], project)
    table = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    assert "fast-lr" in json.dumps(table)


def test_atomic_writes_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "model.pt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    folder = tmp_path / "clean"
    folder.mkdir()
    (folder / "old.csv").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(folder) as tmp:
            (tmp / "new.csv").write_text("new")
            raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean"]
    assert [p.name for p in folder.iterdir()] == ["old.csv"]


def test_cross_validation_sweep_tests_every_image_once_and_pools_the_predictions(swept_template, swept):
    project, (_, before, output) = swept, swept_template
    params = project / "params.yaml"
    predictions = pd.read_csv(project / "records/cv2_predictions.csv")
    for name in MODELS:
        rows = predictions[predictions["model"] == name]
        assert sorted(rows["image"]) == [f"BloodImage_{n:05d}" for n in range(40)]  # every image tested once
        assert sorted(set(rows["fold"])) == [0, 1]
    sweep = json.loads((project / "records/cv2.json").read_text())
    for name in MODELS:
        row = sweep["models"][name]
        rows = predictions[predictions["model"] == name]
        assert row["n_predictions"] == 40
        assert row["accuracy"]["value"] == pytest.approx((rows["actual"] == rows["predicted"]).mean())
        low, high = row["accuracy"]["ci95"]
        assert low <= row["accuracy"]["value"] <= high
        folds = [(g["actual"] == g["predicted"]).mean() for _, g in rows.groupby("fold")]
        assert row["per_fold_accuracy"]["mean"] == pytest.approx(sum(folds) / 2)
    assert len(sweep["pairs"]) == 3 and "McNemar" in output
    assert sweep["description"].startswith("2-fold cross-validation, data seeds 0") and "data: synthetic" in sweep["description"]
    assert any(line.startswith("Trained on ") and "precision: resnet " in line for line in sweep["trained_on"])
    assert "| resnet (40 predictions of 40 images)" in (project / "records/cv2.md").read_text()
    assert params.read_text() == before  # queued runs leave the workspace alone
    assert "train.threads=" in output  # two workers share the cores
    names = run(["dvc", "exp", "ls", "--name-only"], project).stdout.split()
    assert {"cv2-s0-f0", "cv2-s0-f1"} <= set(names)
    (project / "records/cv2.md").unlink()
    run([sys.executable, "src/sweep.py", "report", "cv2"], project)
    assert json.loads((project / "records/cv2.json").read_text())["pairs"] == sweep["pairs"]
    (project / "records/cv2_predictions.csv").unlink()  # the experiments alone give the same report
    run([sys.executable, "src/sweep.py", "run", "--folds", "2", "--jobs", "2", "--collect-only"], project)
    assert pd.read_csv(project / "records/cv2_predictions.csv").equals(predictions)


def test_a_failed_sweep_run_shows_its_log_and_fails_the_sweep(project):
    result = run([sys.executable, "src/sweep.py", "run", "--folds", "2", "-S", "models.alexnet.epochs=0"], project,
                 check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "models.alexnet.epochs: must be greater than 0, got 0" in output  # the end of the failed run's log, not swallowed
    assert "error: 2 of 2 experiments failed (cv2-s0-f0, cv2-s0-f1" in result.stderr
    assert not (project / "records/cv2_predictions.csv").exists()
