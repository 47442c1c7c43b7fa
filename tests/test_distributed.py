"""One model trained by two gloo processes on the CPU: the same weights in both, process 1 writes nothing."""
import json
import sys

from bloodcells.models import checkpoints
from bloodcells.training import distributed
from conftest import ROOT, run, set_params, stage

# With WATCH set, each process of the run writes to that folder the digest of its model's weights (parameters) after
# training, and process 1 the files it opened for writing (or replaced) inside the project.
SITECUSTOMIZE = '''
import os
if os.environ.get("WATCH") and "RANK" in os.environ:
    import builtins
    import hashlib
    from pathlib import Path

    watch, rank, project = Path(os.environ["WATCH"]), os.environ["RANK"], Path.cwd().resolve()
    written = []

    def inside(path):
        try:
            return Path(path).resolve().is_relative_to(project)
        except TypeError:
            return False

    if rank != "0":
        real_open, real_replace = builtins.open, os.replace

        def watched_open(file, mode="r", *args, **kwargs):
            if any(flag in mode for flag in "wax+") and inside(file):
                written.append(str(file))
            return real_open(file, mode, *args, **kwargs)

        def watched_replace(source, target, *args, **kwargs):
            if inside(target):
                written.append(str(target))
            return real_replace(source, target, *args, **kwargs)

        builtins.open, os.replace = watched_open, watched_replace

    from bloodcells.training import loop
    train_model = loop.train_model

    def digest_after(model, *args, **kwargs):
        result = train_model(model, *args, **kwargs)
        digest = hashlib.sha256()
        for tensor in model.parameters():  # the batch norms' running statistics are each process's own
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        (watch / f"rank{rank}.json").write_text(__import__("json").dumps(
            {"weights": digest.hexdigest(), "written": written}))
        return result

    loop.train_model = digest_after
'''


def test_a_share_is_each_process_s_contiguous_part_of_the_batch(monkeypatch):
    parts = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        parts.append(distributed.share(10))
    assert parts == [slice(0, 4), slice(4, 7), slice(7, 10)]
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert distributed.share(10) == slice(0, 10) and distributed.total([2.0, 3], None) == (2.0, 3)


def test_two_gloo_processes_train_one_model_and_only_process_0_writes(project, tmp_path):
    watch = tmp_path / "watch"
    watch.mkdir()
    (watch / "sitecustomize.py").write_text(SITECUSTOMIZE)
    stage(project, "fetch")
    stage(project, "clean")
    set_params(project, {"train": {"processes": 2, "threads": 1}, "models": {"resnet": {"epochs": 2}}})
    result = run([sys.executable, "src/train.py", "resnet"], project,
                 env={"WATCH": str(watch), "PYTHONPATH": f"{watch}:{ROOT / 'src'}"})
    ranks = [json.loads((watch / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # DDP kept the two copies equal, step by step
    assert ranks[1]["written"] == []
    assert "resnet: kept epoch 2 (val accuracy" in result.stdout
    summary = json.loads((project / "metrics/train/resnet/metrics.json").read_text())
    assert 0 <= summary["selected_val_accuracy"] <= 1
    made_on = json.loads((project / "metrics/train/resnet/machine.json").read_text())
    assert (made_on["distributed"]["processes"], made_on["distributed"]["global_batch"]) == (2, 16)
    assert checkpoints.load(project / "models/resnet.pt").machine["distributed"]["processes"] == 2
    assert not (project / ".dvc/tmp/resume/workspace").exists()
