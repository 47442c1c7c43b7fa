"""The sweep's bookkeeping: experiment names, the runs it plans, pooling, merging, argument checks."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

from bloodcells.core.errors import UserError
from bloodcells.data import sources
from bloodcells.data.cleaning import BCCD_CLASSES as CLASSES
from bloodcells.experiments import comparison as record_comparison, plan, queue as exp_queue, records, report
from conftest import ROOT, load_script, run

sweep = load_script("src/sweep.py")


def describe(folds, seeds, train_seeds, settings, data, only_folds=None):
    """A record's configuration in words, as the sweep writes it for these -S settings."""
    return records.describe_configuration(records.configuration(
        folds, seeds, train_seeds, plan.recorded_settings(plan.parse_settings(settings)), data, only_folds))


def test_experiment_args_name_the_fold_the_seed_and_the_training_seed():
    assert plan.experiment_args(5, 0, 3, None, ["models.resnet.lr=0.002"]) == [
        "-S", "data.seed=0", "-S", "data.folds=5", "-S", "data.fold=3", "-S", "models.resnet.lr=0.002"]
    assert plan.experiment_args(5, 1, 0, 2, [])[-2:] == ["-S", "train.seed=2"]
    assert plan.experiment_args(0, 3, None, None, []) == ["-S", "data.seed=3", "-S", "data.folds=0"]
    assert plan.experiment_name(5, 1, 0, 2) == "cv5-s1-f0-train-2"
    assert plan.experiment_name(0, 3, None, None) == "split-3"


def settings(jobs, sets=()):
    return argparse.Namespace(jobs=jobs, set_param=list(sets))


def run_settings(args, params):
    return plan.run_settings(args.jobs, args.set_param, params["data"]["source"])


def test_queued_runs_get_an_absolute_data_source_and_a_share_of_the_cores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    params = {"data": {"source": "bccd"}}
    assert run_settings(settings(1), params) == []
    assert run_settings(settings(2), params) == ["train.threads=4"]
    assert run_settings(settings(16), params) == ["train.threads=1"]
    assert run_settings(settings(2, ["train.threads=3"]), params) == ["train.threads=3"]  # the user's wins
    assert run_settings(settings(1, ["data.source=copy"]), params) == [f"data.source={tmp_path / 'copy'}"]
    assert run_settings(settings(1), {"data": {"source": "copy"}}) == [f"data.source={tmp_path / 'copy'}"]
    assert run_settings(settings(1), {"data": {"source": "/abs/copy"}}) == []
    assert run_settings(settings(1, ["start=pbc", "pretrain.source=pbc"]), params) == \
        ["start=pbc", f"pretrain.source={tmp_path / 'pbc'}"]  # every path key, not only data.source


def test_queue_status_is_read_from_dvcs_table():
    text = """Task     Name       Created    Status
a6d23e9  cv5-s0-f0  03:25 PM   Success
b5bd156  cv5-s0-f1  Nov 29, 2026   Running
19c0f89  cv5-s0-f2  03:29 PM   Failed
0c0ffee  cv5-s0-f3  03:29 PM   Queued

Worker status: 1 active, 2 idle
"""
    assert exp_queue.parse_queue_status(text) == (
        {"cv5-s0-f0": "Success", "cv5-s0-f1": "Running", "cv5-s0-f2": "Failed", "cv5-s0-f3": "Queued"}, 3)
    assert exp_queue.parse_queue_status("No experiment tasks in the queue.\n\nWorker status: 0 active, 0 idle\n") \
        == ({}, 0)


def test_planned_runs_cover_every_fold_of_every_repeat():
    assert plan.planned_runs(3, [0, 1], None) == [(s, f, None) for s in (0, 1) for f in range(3)]
    assert plan.planned_runs(0, [4], [0, 1]) == [(4, None, 0), (4, None, 1)]


def predictions(accuracies, n_images=20, folds=2, seed=0):
    """A sweep's predictions of models with given accuracies on the same images (random which are wrong)."""
    rng = np.random.default_rng(seed)
    actual = np.arange(n_images) % len(CLASSES)
    rows = []
    for name, accuracy in accuracies.items():
        wrong = rng.permutation(n_images) < round((1 - accuracy) * n_images)
        predicted = np.where(wrong, (actual + 1) % len(CLASSES), actual)
        for i in range(n_images):
            probabilities = np.full(len(CLASSES), 0.1)
            probabilities[predicted[i]] = 0.7
            rows.append({"data_seed": 0, "fold": i % folds, "train_seed": -1, "model": name,
                         "image": f"BloodImage_{i:05d}", "actual": CLASSES[actual[i]],
                         "predicted": CLASSES[predicted[i]],
                         **{f"p_{c}": probabilities[k] for k, c in enumerate(CLASSES)}})
    return pd.DataFrame(rows)


def test_report_pools_every_prediction_and_compares_models_pairwise():
    frame = predictions({"a": 0.9, "b": 0.6, "c": 0.6})
    summary = report.report(frame)
    assert summary["models"]["a"]["accuracy"]["value"] == pytest.approx(0.9)
    assert summary["models"]["a"]["n_predictions"] == 20
    low, high = summary["models"]["b"]["accuracy"]["ci95"]
    assert low < 0.6 < high and high - low > 0.2  # 20 images: a wide interval
    assert summary["models"]["a"]["per_fold_accuracy"]["values"] == pytest.approx(
        [(g["actual"] == g["predicted"]).mean() for _, g in frame[frame["model"] == "a"].groupby("fold")])
    pairs = {(p["a"], p["b"]): p for p in summary["pairs"]}
    assert set(pairs) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert pairs["a", "b"]["difference"] == pytest.approx(0.3)
    assert summary["missed_by_every_model"] == []  # this draw has no image that all three got wrong
    frame.loc[frame["image"] == "BloodImage_00004", "predicted"] = "EOSINOPHIL"  # labelled NEUTROPHIL
    [missed] = report.report(frame)["missed_by_every_model"]
    assert missed == {"image": "BloodImage_00004", "label": "NEUTROPHIL",
                      "called": {name: ["EOSINOPHIL"] for name in "abc"}}
    table = report.markdown(summary, "test sweep.")
    assert "| a (20 predictions of 20 images) | 0.900 (" in table and "a vs b: +30.0 points" in table


def test_report_refuses_models_scored_on_different_images():
    frame = predictions({"a": 0.9, "b": 0.6})
    frame = frame.drop(index=frame.index[-1])
    with pytest.raises(UserError, match="not scored on the same test images"):
        report.report(frame)


@pytest.mark.parametrize("args, message", [
    (["run", "--seeds", "0", "0"], "--seeds repeats a seed"),
    (["run", "--train-seeds", "1", "1"], "--train-seeds repeats a seed"),
    (["run", "--train-seeds", "0", "1", "-S", "train.seed=2"], "give train.seed with --train-seeds"),
    (["run", "-S", "data.fold=2"], "give data.fold with --folds"),
    (["run", "--folds", "1"], "--folds must be 0 (random splits) or at least 2"),
    (["run", "--repeats", "0"], "--repeats must be at least 1"),
    (["run", "--jobs", "0"], "--jobs must be at least 1"),
    (["run", "--only-folds", "1", "1"], "--only-folds repeats a fold"),
    (["run", "--only-folds", "5"], "--only-folds must name folds from 0 to --folds - 1 = 4, got 5"),
    (["run", "--folds", "0", "--only-folds", "0"], "--only-folds needs K-fold cross-validation"),
    (["run", "--queued-on", "HEAD"], "--queued-on goes with --collect-only"),
    (["merge", "a", "b"], "merge needs --record NAME"),
    (["merge", "a", "--record", "ab"], "merge takes two or more different records"),
    (["merge", "a", "a", "--record", "ab"], "merge takes two or more different records"),
])
def test_bad_sweep_arguments_are_one_line_before_any_run(args, message, tmp_path):
    result = run([sys.executable, str(ROOT / "src/sweep.py"), *args], tmp_path, check=False)
    assert result.returncode != 0 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_wait_follows_the_queue_shows_a_failed_runs_log_and_returns_every_outcome(monkeypatch, capsys):
    states = iter([({"a": "Queued", "b": "Queued"}, 1), ({"a": "Running", "b": "Queued"}, 1),
                   ({"a": "Success", "b": "Running"}, 1), ({"a": "Success", "b": "Failed"}, 0)])
    monkeypatch.setattr(exp_queue, "queue_status", lambda: next(states))
    monkeypatch.setattr(exp_queue, "log_tail", lambda name: f"error: the log of {name}")
    monkeypatch.setattr(exp_queue.time, "sleep", lambda seconds: None)
    assert exp_queue.wait(["a", "b"], started=0.0) == {"a": "Success", "b": "Failed"}
    shown = capsys.readouterr()
    output = shown.out + shown.err
    assert "a: success after" in output and "b: failed after" in output and "error: the log of b" in output


def test_a_run_missing_from_one_status_table_is_not_failed_but_one_gone_for_a_minute_is(monkeypatch):
    monkeypatch.setattr(exp_queue.time, "sleep", lambda seconds: None)
    clock = iter(range(0, 10000, 30))
    monkeypatch.setattr(exp_queue.time, "perf_counter", lambda: next(clock))
    states = iter([({"a": "Success", "b": "Queued"}, 1), ({"a": "Success"}, 1),  # b between two tables once
                   ({"a": "Success", "b": "Running"}, 1), ({"a": "Success", "b": "Success"}, 0)])
    monkeypatch.setattr(exp_queue, "queue_status", lambda: next(states))
    assert exp_queue.wait(["a", "b"], started=0.0) == {"a": "Success", "b": "Success"}
    states = iter([({"a": "Success", "b": "Running"}, 1)] + [({"a": "Success"}, 0)] * 3)  # 30 s a poll
    monkeypatch.setattr(exp_queue, "queue_status", lambda: next(states))
    assert exp_queue.wait(["a", "b"], started=0.0) == {"a": "Success", "b": "Failed"}


def test_wait_replaces_a_stopped_worker_once_per_run_then_stops(monkeypatch, capsys):
    monkeypatch.setattr(exp_queue, "queue_status", lambda: ({"a": "Queued"}, 0))
    monkeypatch.setattr(exp_queue.time, "sleep", lambda seconds: None)
    started = []
    monkeypatch.setattr(exp_queue, "start_workers", lambda jobs: started.append(jobs))
    clock = iter(range(0, 10000, 30))
    monkeypatch.setattr(exp_queue.time, "perf_counter", lambda: next(clock))
    with pytest.raises(UserError, match="wait in the queue but no DVC queue worker has run for 10 min"):
        exp_queue.wait(["a"], started=0.0)
    shown = capsys.readouterr()
    assert started == [1] and "no DVC queue worker is left for 1 queued runs" in shown.out + shown.err


def test_wait_goes_on_with_the_replaced_worker(monkeypatch):
    states = iter([({"a": "Success", "b": "Queued"}, 0)] * 6 + [({"a": "Success", "b": "Running"}, 1),
                                                                 ({"a": "Success", "b": "Success"}, 0)])
    monkeypatch.setattr(exp_queue, "queue_status", lambda: next(states))
    monkeypatch.setattr(exp_queue.time, "sleep", lambda seconds: None)
    started = []
    monkeypatch.setattr(exp_queue, "start_workers", lambda jobs: started.append(jobs))
    clock = iter(range(0, 10000, 30))
    monkeypatch.setattr(exp_queue.time, "perf_counter", lambda: next(clock))
    assert exp_queue.wait(["a", "b"], started=0.0) == {"a": "Success", "b": "Success"} and started == [1]


def test_wait_trusts_a_running_experiment_whose_busy_worker_does_not_answer(monkeypatch):
    states = iter([({"a": "Running"}, 0)] * 40 + [({"a": "Success"}, 0)])  # DVC reports 0 workers while one runs
    monkeypatch.setattr(exp_queue, "queue_status", lambda: next(states))
    monkeypatch.setattr(exp_queue.time, "sleep", lambda seconds: None)
    clock = iter(range(0, 10000, 30))
    monkeypatch.setattr(exp_queue.time, "perf_counter", lambda: next(clock))
    assert exp_queue.wait(["a"], started=0.0) == {"a": "Success"}


def test_each_configuration_has_its_own_record_named_for_what_it_is():
    assert plan.record_name(5, [0], None, []) == "defaults"
    assert plan.record_name(5, [0], None, ["data.source=/some/copy"]) == "defaults"  # the data is not the recipe
    assert plan.record_name(5, [0], None, ["clean.locator=stain"]) == "locator_stain"
    assert plan.record_name(5, [0, 1, 2], [0, 1], ["models.resnet.epochs=40"]) == \
        "resnet_epochs_40_seeds_0-1-2_train_seeds_0-1"
    assert plan.record_name(2, [0], None, []) == "cv2"
    assert plan.record_name(5, [0], None, ["dataset=pbc", "data.source=/x/PBC.zip"]) == "pbc"
    assert plan.record_name(5, [0], None, ["start=pbc", "pretrain.source=/x/PBC"]) == "start_pbc"
    assert records.record_paths("defaults")[1].as_posix() == "records/defaults.md"
    assert plan.record_name(5, [0], None, ["finetune.lr_scale=0.3"], only_folds=[0, 1]) == "lr_scale_0.3_folds_0-1"


def test_only_folds_runs_those_folds_and_the_record_says_so():
    assert plan.planned_runs(5, [0, 1], None, only_folds=[2, 4]) == [(0, 2, None), (0, 4, None), (1, 2, None),
                                                                       (1, 4, None)]
    assert len(plan.planned_runs(5, [0], None)) == 5
    said = describe(5, [0], None, [], "bccd", only_folds=[2, 4])
    assert "5-fold cross-validation, data seeds 0 (folds 2, 4 only" in said


def test_a_record_names_a_local_copy_by_what_it_holds_never_by_its_path(tmp_path):
    copy = tmp_path / "copy" / "dataset-master"
    (copy / "JPEGImages").mkdir(parents=True)
    (copy / "labels.csv").write_text(",Image,Category\n,0,NEUTROPHIL\n")
    (copy / "JPEGImages" / "BloodImage_00000.jpg").write_bytes(b"not really a jpeg")
    manifest = tmp_path / "bccd.sha256"
    described = describe(5, [0], None, [f"data.source={copy}"], sources.describe_source(copy, manifest))
    assert str(tmp_path) not in described and "a local copy (SHA-256 of its files' manifest" in described
    sources.write_manifest(copy, manifest)
    assert "byte-identical to the bccd download" in sources.describe_source(copy.parent, manifest)
    assert sources.describe_source("bccd", manifest) == "bccd"


def test_a_record_names_any_path_setting_by_what_the_copy_holds(tmp_path):
    (tmp_path / "pbc" / "basophil").mkdir(parents=True)
    (tmp_path / "pbc" / "basophil" / "BA_1.jpg").write_bytes(b"not really a jpeg")
    said = describe(5, [0], None, ["start=pbc", f"pretrain.source={tmp_path / 'pbc'}"], "bccd")
    assert "start=pbc" in said and "pretrain.source=<a local copy (SHA-256 of its files' manifest" in said
    assert str(tmp_path) not in said


def kept_predictions(right, model="resnet"):
    """Kept predictions of one model over 40 images: image i right where right[i]."""
    return pd.DataFrame({"data_seed": 0, "fold": [i % 5 for i in range(40)], "train_seed": -1, "model": model,
                         "image": [f"IMG_{i}" for i in range(40)], "actual": "A",
                         "predicted": ["A" if ok else "B" for ok in right]})


def test_a_record_against_another_counts_the_images_only_one_got_right_per_model():
    base = [i >= 12 for i in range(40)]  # 28 right
    changed = [i >= 2 for i in range(40)]  # 38 right: 10 more, none lost
    pairs = record_comparison.compare_records(
        pd.concat([kept_predictions(changed), kept_predictions(base, "alexnet")]),
        pd.concat([kept_predictions(base), kept_predictions(base, "alexnet")]), "start_pbc", "defaults")
    resnet, alexnet = pairs
    assert (resnet["mcnemar"][0]["only_a_right"], resnet["mcnemar"][0]["only_b_right"]) == (10, 0)
    assert resnet["difference"] == pytest.approx(0.25) and resnet["mcnemar"][0]["p_value"] < 0.01
    assert alexnet["difference"] == 0 and alexnet["mcnemar"][0]["p_value"] == 1
    said = record_comparison.markdown(pairs, "start_pbc", "defaults")
    assert "| resnet | 0.950 | 0.700 | +25.0 points" in said and "Significant at 0.05 after Holm: resnet." in said


def test_a_record_of_some_folds_is_compared_on_those_folds_of_a_record_of_all():
    everything = kept_predictions([i >= 12 for i in range(40)])  # images 0-11 wrong
    some = kept_predictions([True] * 40)
    some = some[some["fold"].isin([0, 1])]  # 16 images, of which 0, 1, 5, 6, 10, 11 wrong in the other record
    resnet, = record_comparison.compare_records(some, everything, "tuned_folds_0-1", "start_pbc")
    assert (resnet["accuracy_a"], resnet["accuracy_b"]) == (1.0, 10 / 16)
    assert (resnet["mcnemar"][0]["only_a_right"], resnet["mcnemar"][0]["only_b_right"]) == (6, 0)
    with pytest.raises(UserError, match="were not tested on the same images"):  # not the other way round
        record_comparison.compare_records(everything, some, "start_pbc", "tuned_folds_0-1")


def test_records_of_other_test_images_are_one_line():
    other = kept_predictions([True] * 40).assign(fold=0)
    with pytest.raises(UserError, match="were not tested on the same images"):
        record_comparison.compare_records(kept_predictions([True] * 40), other, "a", "b")


def write_record(record, frame, only_folds, settings=("dataset=pbc",), made_on=("machine A",)):
    configuration = records.configuration(5, [0], None, plan.recorded_settings(plan.parse_settings(settings)),
                                          "a local copy", only_folds)
    sweep.write_record(record, frame, configuration, records.made(len(only_folds), "queued", workers=1, minutes=9),
                       made_on)
    frame.to_csv(records.record_paths(record)[2], index=False)


def merge_command(tmp_path, *args):
    return run([sys.executable, str(ROOT / "src/sweep.py"), *args], tmp_path, check=False)


def test_records_of_different_folds_merge_into_the_record_of_all_folds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "records").mkdir()
    frame = predictions({"resnet": 0.9, "alexnet": 0.7}, n_images=50, folds=5)
    write_record("pbc_folds_3-4", frame[frame["fold"] >= 3], [3, 4], made_on=("machine B",))
    write_record("pbc_folds_0-2", frame[frame["fold"] < 3], [0, 1, 2])
    result = merge_command(tmp_path, "merge", "pbc_folds_3-4", "pbc_folds_0-2", "--record", "pbc")
    assert result.returncode == 0, result.stderr
    merged = json.loads((tmp_path / "records/pbc.json").read_text())
    assert merged["description"].startswith("5-fold cross-validation, data seeds 0 (every image tested once per seed)")
    assert merged["description"].endswith("with dataset=pbc. 5 runs, merged from records pbc_folds_3-4, pbc_folds_0-2.")
    assert list(merged["models"]) == ["resnet", "alexnet"]  # the records' order of the models, not the alphabet's
    assert merged["models"]["resnet"]["n_predictions"] == 50
    assert merged["models"]["resnet"]["accuracy"]["value"] == pytest.approx(0.9)
    assert merged["models"]["resnet"]["per_fold_accuracy"]["values"] == pytest.approx(
        [(g["actual"] == g["predicted"]).mean() for _, g in frame[frame["model"] == "resnet"].groupby("fold")])
    assert merged["trained_on"] == ["machine A", "machine B"]
    pooled = pd.read_csv(tmp_path / "records/pbc_predictions.csv")
    assert sorted(pooled["fold"].unique()) == [0, 1, 2, 3, 4] and len(pooled) == len(frame)
    again = merge_command(tmp_path, "merge", "pbc", "pbc_folds_0-2", "--record", "twice")  # fold 0-2 twice
    assert again.returncode != 0 and "records pbc and pbc_folds_0-2 both hold the run of data seed 0, fold 0" \
        in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_a_merge_of_some_folds_says_which(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "records").mkdir()
    frame = predictions({"resnet": 0.9, "alexnet": 0.7}, n_images=50, folds=5)
    write_record("f1", frame[frame["fold"] == 1], [1])
    write_record("f3", frame[frame["fold"] == 3], [3])
    assert merge_command(tmp_path, "merge", "f1", "f3", "--record", "f13").returncode == 0
    said = json.loads((tmp_path / "records/f13.json").read_text())["description"]
    assert "(folds 1, 3 only (each of their images tested once per seed))" in said


@pytest.mark.parametrize("change, message", [
    (dict(settings=("dataset=pbc_long",)), "records a and b were made with other settings"),
    (dict(models={"resnet": 0.9}), "records a and b hold other models (alexnet, resnet against resnet)"),
    (dict(missing=True), "records/b_predictions.csv not found; run that record's sweep"),
])
def test_records_of_other_configurations_do_not_merge(change, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "records").mkdir()
    frame = predictions({"resnet": 0.9, "alexnet": 0.7}, n_images=50, folds=5)
    write_record("a", frame[frame["fold"] < 3], [0, 1, 2])
    other = predictions(change.get("models", {"resnet": 0.9, "alexnet": 0.7}), n_images=50, folds=5)
    if not change.get("missing"):
        write_record("b", other[other["fold"] >= 3], [3, 4], settings=change.get("settings", ("dataset=pbc",)))
    result = merge_command(tmp_path, "merge", "a", "b", "--record", "ab")
    assert result.returncode != 0 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "records/ab.json").exists()


def test_a_sweep_reads_its_runs_from_the_commit_it_queued_them_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git = lambda *args: run(["git", *args], tmp_path).stdout.strip()  # noqa: E731
    git("init", "-q")
    (tmp_path / "a.txt").write_text("workspace\n")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "queued on this")
    queued_on = git("rev-parse", "HEAD")
    (tmp_path / "a.txt").write_text("the experiment's result\n")
    git("add", "a.txt")
    result = git("-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", git("write-tree"), "-p", queued_on,
                 "-m", "the experiment")
    git("update-ref", f"refs/exps/{queued_on[:2]}/{queued_on[2:]}/cv5-s0-f0", result)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "committed while the sweep ran")
    assert exp_queue.read_file("cv5-s0-f0", "a.txt", queued_on) == "the experiment's result\n"
    with pytest.raises(UserError, match="experiment cv5-s0-f0 has no result on commit .*--queued-on"):
        exp_queue.read_file("cv5-s0-f0", "a.txt")
    assert exp_queue.commit_of(queued_on[:7]) == queued_on  # --queued-on takes a short hash
    assert exp_queue.read_file("cv5-s0-f0", "a.txt", exp_queue.commit_of("HEAD~1")) == "the experiment's result\n"
    with pytest.raises(UserError, match="nosuch is not a commit of this repository"):
        exp_queue.commit_of("nosuch")
