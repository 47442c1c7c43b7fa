"""A training run killed after epoch k continues from epoch k and ends with the bytes of a run never stopped; a state
saved under other settings, or not written whole, is never resumed."""
import hashlib
import json
import signal
import sys

import pytest
import torch

from bloodcells.config.schema import Recipe
from bloodcells.training import resume
from conftest import ROOT, copy_project, git, make_project, run, set_defaults, stage

EPOCHS = 3
STATE = ".dvc/tmp/resume/workspace/train_resnet/state.pt"

# Loaded by every Python process started with this folder on PYTHONPATH: with KILL_AT_EPOCH set, the training run
# kills itself (SIGKILL: no handler, no clean-up) right after the state of that epoch is written, or, with
# KILL_WHILE_WRITING, half way through writing it.
SITECUSTOMIZE = '''
import os
if os.environ.get("KILL_AT_EPOCH"):
    import signal
    import torch
    from bloodcells.training import resume

    epoch, while_writing = int(os.environ["KILL_AT_EPOCH"]), bool(os.environ.get("KILL_WHILE_WRITING"))
    save, torch_save = resume.SavedRun.save, torch.save

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def half_written(state, file, *args, **kwargs):
        if isinstance(state, dict) and state.get("epoch") == epoch:
            with open(file, "wb") as handle:
                handle.write(b"PK\\x03\\x04 the first bytes of a state")
            die()
        return torch_save(state, file, *args, **kwargs)

    def killed_after(self, state):
        save(self, state)
        if state["epoch"] == epoch:
            die()

    if while_writing:
        torch.save = half_written
    else:
        resume.SavedRun.save = killed_after
'''


@pytest.fixture(scope="module")
def trained_for_resume(tmp_path_factory):
    """The tiny project with clean data and ResNet trained for EPOCHS epochs uninterrupted (what every resumed run
    must give: the model's digest, the curves, the metrics), and a folder that makes a run kill itself."""
    project = make_project(tmp_path_factory.mktemp("resume"))
    set_defaults(project, {"models": {"resnet": {"epochs": EPOCHS}}})
    git(project, "commit", "-qam", f"resnet for {EPOCHS} epochs")
    stage(project, "fetch")
    stage(project, "clean")
    uninterrupted = train(project)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert not (project / ".dvc/tmp/resume/workspace").exists()  # a run that completes leaves no state
    killer = tmp_path_factory.mktemp("killer")
    (killer / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return project, killer, outcome(project)


@pytest.fixture
def prepared(trained_for_resume, tmp_path):
    """A copy of that project, the killer folder and the uninterrupted run's outcome."""
    project, killer, expected = trained_for_resume
    return copy_project(project, tmp_path / "project"), killer, expected


def outcome(project):
    """What a run leaves that must not depend on its interruptions: the model's bytes, the curves' bytes and the
    metrics but for the times it took."""
    summary = json.loads((project / "metrics/train/resnet/metrics.json").read_text())
    curves = sorted((project / "metrics/train/resnet/plots").rglob("*.tsv"))
    return {"model": digest(project / "models/resnet.pt"),
            "curves": {str(path.relative_to(project)): digest(path) for path in curves},
            "metrics": {key: value for key, value in summary.items()
                        if key not in ("train_seconds", "images_per_second", "seconds_per_epoch", "data_wait_share")}}


def train(project, killer=None, epoch=None, while_writing=False, command=None):
    env = {}
    if killer is not None:
        env = {"PYTHONPATH": f"{killer}:{ROOT / 'src'}", "KILL_AT_EPOCH": str(epoch),
               "KILL_WHILE_WRITING": "1" if while_writing else ""}
    return run(command or [sys.executable, "src/train.py", "resnet"], project, check=False, env=env)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def logged_epochs(project):
    header, *rows = (project / "metrics/train/resnet/plots/metrics/val/accuracy.tsv").read_text().splitlines()
    column = header.split("\t").index("step")
    return [int(row.split("\t")[column]) for row in rows]


def test_a_killed_run_resumes_after_its_last_complete_epoch_and_ends_with_the_same_bytes(prepared):
    project, killer, expected = prepared
    killed = train(project, killer, epoch=2)
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(project / STATE, weights_only=True)["epoch"] == 2

    resumed = train(project)
    assert resumed.returncode == 0, resumed.stderr
    assert "train_resnet: resuming after epoch 2" in resumed.stdout
    assert outcome(project) == expected  # the model, and curves with no epoch repeated or missing
    assert logged_epochs(project) == list(range(1, EPOCHS + 1))
    assert not (project / STATE).exists()


def test_a_state_killed_while_being_written_is_never_read(prepared):
    project, killer, expected = prepared
    killed = train(project, killer, epoch=1, while_writing=True)  # the first state: nothing complete to go back to
    assert killed.returncode == -signal.SIGKILL
    assert not (project / STATE).exists()
    assert list((project / STATE).parent.glob(".state.pt.*.tmp"))  # the half-written file, under another name
    again = train(project, killer, epoch=2, while_writing=True)  # starts again; epoch 1's state stays whole
    assert again.returncode == -signal.SIGKILL and "resuming" not in again.stdout
    resumed = train(project)
    assert "train_resnet: resuming after epoch 1" in resumed.stdout
    assert outcome(project) == expected


def test_a_state_saved_under_other_parameters_is_not_resumed_and_the_run_says_why(prepared):
    project, killer, _ = prepared
    assert train(project, killer, epoch=2).returncode == -signal.SIGKILL
    set_defaults(project, {"models": {"resnet": {"epochs": EPOCHS, "lr": 0.002}}})
    again = train(project)
    assert again.returncode == 0, again.stderr
    line = [line for line in again.stdout.splitlines() if "not resuming" in line]
    assert line == ["train_resnet: not resuming the state saved after epoch 2: the parameters (lr) changed since; "
                    "starting again"]
    assert not (project / STATE).exists()


def test_dvc_exp_run_resumes_its_own_experiment(prepared):
    project, killer, expected = prepared
    command = ["dvc", "exp", "run", "-n", "long", "train_resnet"]
    killed = train(project, killer, epoch=2, command=command)
    assert killed.returncode != 0
    assert (project / ".dvc/tmp/resume/long/train_resnet/state.pt").is_file()  # the experiment's slot
    resumed = train(project, command=command)
    assert resumed.returncode == 0, resumed.stderr
    assert "train_resnet: resuming after epoch 2" in resumed.stdout + resumed.stderr
    assert not (project / ".dvc/tmp/resume/long").exists()
    assert outcome(project) == expected


def recipe(**changes):
    import yaml
    train = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    return Recipe(**{**train, "name": "resnet", "arch": "resnet18", **changes})


def test_the_fingerprint_names_what_changed():
    data = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    split = type("Split", (), {"images": data, "labels": torch.arange(4)})
    model = torch.nn.Linear(2, 2)
    before = resume.fingerprint(recipe(), model, split, split, [0.5] * 3, [0.2] * 3, torch.device("cpu"),
                                script=__file__)
    assert resume.differences(before, before) == []
    after = resume.fingerprint(recipe(lr=0.5, epochs=2), model, split, split, [0.5] * 3, [0.2] * 3,
                               torch.device("cpu"), script=__file__)
    assert resume.differences(before, after) == ["the parameters (epochs, lr)"]
    split.images = data + 1
    torch.nn.init.zeros_(model.weight)
    after = resume.fingerprint(recipe(), model, split, split, [0.5] * 3, [0.2] * 3, torch.device("cpu"),
                               script=__file__)
    assert resume.differences(before, after) == ["the training or validation data", "the starting weights"]
    assert resume.differences({**before, "machine": {**before["machine"], "cpu": "another"}}, before) == \
        ["the machine (cpu)"]


def test_a_state_that_cannot_be_read_is_said_and_not_used(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(resume.ROOT_VARIABLE, str(tmp_path))
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    saved = resume.SavedRun("train_resnet", {"recipe": {}})
    assert saved.load() is None and capsys.readouterr().out == ""  # nothing saved: nothing said
    saved.path.parent.mkdir(parents=True)
    saved.path.write_bytes(b"not a state")
    assert saved.load() is None
    assert "cannot be read" in capsys.readouterr().out
    saved.save({"epoch": 4, "weights": torch.ones(2)})
    assert saved.load()["epoch"] == 4 and "resuming after epoch 4" in capsys.readouterr().out
    saved.remove()
    assert not (tmp_path / "workspace").exists()


class Stopped(Exception):
    pass


@pytest.mark.parametrize("select", ["last", "best"])
def test_train_model_stopped_after_an_epoch_resumes_to_the_same_weights(tmp_path, monkeypatch, select):
    from dvclive import Live
    from bloodcells.models.factory import build_model
    from bloodcells.training.loop import seed_everything, train_model
    from test_training import config, tiny_data
    monkeypatch.setenv(resume.ROOT_VARIABLE, str(tmp_path / "states"))
    cfg = config(epochs=3, batch_size=8, ema=0.5, mixup=0.2, select=select)

    def fit(tag, saved_run=None):
        seed_everything(0)
        model = build_model("resnet", "resnet18", image_size=48, num_classes=4)
        with Live(dir=str(tmp_path / tag), dvcyaml=None, save_dvc_exp=False, report=None) as live:
            return train_model(model, tiny_data(16), tiny_data(8, seed=1), cfg, live, torch.device("cpu"),
                               [0.5] * 3, [0.25] * 3, saved_run)

    expected, summary = fit("whole")
    saved = resume.SavedRun("train_resnet", {"recipe": cfg.model_dump(mode="json")})
    save = resume.SavedRun.save

    def save_then_stop(self, state):
        save(self, state)
        if state["epoch"] == 1:
            raise Stopped

    monkeypatch.setattr(resume.SavedRun, "save", save_then_stop)
    with pytest.raises(Stopped):
        fit("stopped", saved)
    monkeypatch.setattr(resume.SavedRun, "save", save)
    state, again = fit("resumed", saved)
    assert all(torch.equal(state[key], expected[key]) for key in expected)
    assert (again["selected_epoch"], again["best_epoch"]) == (summary["selected_epoch"], summary["best_epoch"])
    assert (tmp_path / "resumed/plots/metrics/val/accuracy.tsv").read_text() == \
        (tmp_path / "whole/plots/metrics/val/accuracy.tsv").read_text()
