"""The sweep's bookkeeping: experiment names, averaging over training seeds, argument checks."""
import statistics
import sys

import pytest

import sweep
from conftest import ROOT, run


def scores(accuracy):
    return {"accuracy": accuracy, "macro_sensitivity": accuracy - 0.1, "macro_specificity": accuracy + 0.05}


def test_experiment_args_name_the_split_and_the_training_seed():
    assert sweep.experiment_args(3, None, ["models.resnet.lr=0.002"]) == [
        "dvc", "exp", "run", "-S", "data.seed=3", "-S", "models.resnet.lr=0.002", "--name", "split-3"]
    assert sweep.experiment_args(3, 1, []) == [
        "dvc", "exp", "run", "-S", "data.seed=3", "-S", "train.seed=1", "--name", "split-3-train-1"]


def test_split_scores_average_the_training_seeds_and_spread_is_over_splits():
    runs = {(0, 0): {"m": scores(0.8)}, (0, 1): {"m": scores(0.9)},
            (1, 0): {"m": scores(1.0)}, (1, 1): {"m": scores(0.6)}}
    row = sweep.summarise(runs, ["m"])["m"]
    assert row["per_seed"][0]["accuracy"] == pytest.approx(0.85)
    assert row["per_seed"][1]["accuracy"] == pytest.approx(0.8)
    assert row["accuracy"]["mean"] == pytest.approx(0.825)
    assert row["accuracy"]["std"] == pytest.approx(statistics.stdev([0.85, 0.8]))
    assert row["macro_sensitivity"]["mean"] == pytest.approx(0.725)
    assert [(r["split_seed"], r["train_seed"], r["accuracy"]) for r in row["per_run"]] == [
        (0, 0, 0.8), (0, 1, 0.9), (1, 0, 1.0), (1, 1, 0.6)]
    table = sweep.markdown(sweep.summarise(runs, ["m"]), [0, 1])
    assert "mean over training seeds 0, 1" in table
    assert "| m | 0.850 / 0.750 | 0.800 / 0.700 | 0.825 ± 0.035 |" in table


def test_one_training_seed_keeps_the_per_split_scores():
    runs = {(0, None): {"m": scores(0.8)}, (1, None): {"m": scores(0.9)}}
    row = sweep.summarise(runs, ["m"])["m"]
    assert [row["per_seed"][s]["accuracy"] for s in (0, 1)] == [0.8, 0.9]
    assert "training seeds" not in sweep.markdown({"m": row})


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0", "0"], "--seeds repeats a seed"),
    (["--seeds", "0", "--train-seeds", "1", "1"], "--train-seeds repeats a seed"),
    (["--seeds", "0", "--train-seeds", "0", "1", "-S", "train.seed=2"], "either as --train-seeds or as -S"),
])
def test_bad_sweep_arguments_are_one_line_before_any_run(args, message, tmp_path):
    result = run([sys.executable, str(ROOT / "src/sweep.py"), *args], tmp_path, check=False)
    assert result.returncode != 0 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
