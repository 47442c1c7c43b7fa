"""The sweep on a real one-node Slurm cluster (.ci/slurm/start): each run a Slurm task in a clone of its own, shared
through a bare git repository and a local DVC remote; the record equals a local sweep's; a cancelled task comes
back."""
import json
import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import GIT_IDENTITY, ROOT, git, run

SLURM = ROOT / ".ci/slurm"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """SLURM_CONF of a one-node cluster on this machine, stopped after the module's tests."""
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        pytest.skip("Slurm is not installed here (as root: apt-get install slurm-wlm munge; .ci/run does it)")
    if os.geteuid() != 0:
        pytest.skip("starting munged and slurmd needs root here")
    folder = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(SLURM / "start"), str(folder)], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(f"the Slurm cluster did not start: {started.stderr.strip()[-500:]}")
    yield {"SLURM_CONF": started.stdout.strip()}
    subprocess.run([str(SLURM / "stop"), str(folder)], capture_output=True)


def shared(project, tmp_path):
    """The project with a bare git repository as origin and a local folder as its default DVC remote, pushed."""
    run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], tmp_path)
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "dvc-remote")], project)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "the shared remotes")
    git(project, "remote", "add", "origin", str(tmp_path / "origin.git"))
    git(project, "push", "-q", "origin", "main")
    return project


def tables(project, record):
    return [line for line in (project / f"records/{record}.md").read_text().splitlines() if line.startswith("|")]


def test_a_slurm_sweep_equals_a_local_one_and_a_cancelled_task_is_run_again(swept, cluster, tmp_path):
    """The local sweep (conftest's swept: two workers, train.threads=1 each) against the same runs on Slurm, two tasks
    of one core at a time."""
    project = shared(swept, tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DVC_NO_ANALYTICS": "1", **GIT_IDENTITY, **cluster}
    started = time.perf_counter()
    sweep = subprocess.Popen([sys.executable, "src/sweep.py", "run", "--folds", "2", "--on", "slurm", "--record",
                              "slurm", "-S", "train.threads=1"], cwd=project, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    cancelled = None
    while cancelled is None and sweep.poll() is None:  # cancel the first task that runs, once
        queue = subprocess.run(["squeue", "-h", "-r", "-n", "bloodcells-slurm", "-o", "%i %T"], env=env,
                               capture_output=True, text=True).stdout.split()
        running = [task for task, state in zip(queue[::2], queue[1::2]) if state == "RUNNING"]
        if running:
            time.sleep(5)  # inside its run
            cancelled = running[0]
            subprocess.run(["scancel", cancelled], env=env, check=True)
        time.sleep(1)
    output = sweep.communicate(timeout=1800)[0]
    print(f"2-fold tiny sweep on Slurm: {(time.perf_counter() - started) / 60:.1f} min, one task cancelled and run "
          "again")
    assert sweep.returncode == 0, output[-3000:]
    assert cancelled is not None and "ended without a result (try 1)" in output and "submitted again" in output
    local, on_slurm = (json.loads((project / f"records/{name}.json").read_text()) for name in ("cv2", "slurm"))
    assert on_slurm["made"]["how"] == "slurm" and on_slurm["made"]["failed"] == [] and on_slurm["made"]["runs"] == 2
    for key in set(local) - {"record", "description", "made", "source"}:
        assert on_slurm[key] == local[key], key
    predictions = pd.read_csv(project / "records/cv2_predictions.csv")
    assert pd.read_csv(project / "records/slurm_predictions.csv").equals(predictions)
    assert tables(project, "slurm") == tables(project, "cv2")
    elsewhere = tmp_path / "elsewhere"  # any clone that reaches both remotes collects the same record
    run(["git", "clone", "-q", "-b", "main", str(tmp_path / "origin.git"), str(elsewhere)], tmp_path)
    run([sys.executable, "src/sweep.py", "run", "--folds", "2", "--on", "slurm", "--record", "slurm", "-S",
         "train.threads=1", "--collect-only"], elsewhere, env=cluster)
    assert pd.read_csv(elsewhere / "records/slurm_predictions.csv").equals(predictions)


@pytest.mark.parametrize("breakage,message", [
    ("no sbatch", "--on slurm: sbatch not found"),
    ("no git remote", "--on slurm: no git remote 'origin'"),
    ("no dvc remote", "--on slurm: no default DVC remote"),
    ("uncommitted", "--on slurm: uncommitted changes"),
    ("not pushed", "is not on git remote 'origin'"),
])
def test_a_sweep_that_cannot_run_on_slurm_is_one_line_and_submits_nothing(breakage, message, project, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho submitted >> \"$(dirname \"$0\")/called\"\n")
    (bin_dir / "sbatch").chmod(0o755)
    if breakage != "no git remote":
        shared(project, tmp_path)
    if breakage == "no dvc remote":
        run(["dvc", "remote", "remove", "shared"], project)
        git(project, "commit", "-qam", "no DVC remote")
        git(project, "push", "-q", "origin", "main")
    if breakage == "uncommitted":
        (project / "params.yaml").write_text((project / "params.yaml").read_text() + "\n")
    if breakage == "not pushed":
        (project / "README.md").write_text("changed\n")
        git(project, "commit", "-qam", "not pushed")
    path = os.environ["PATH"] if breakage == "no sbatch" else f"{bin_dir}:{os.environ['PATH']}"
    if breakage == "no sbatch":
        path = ":".join(part for part in path.split(":") if not (shutil.which("sbatch", path=part)))
    result = run([sys.executable, "src/sweep.py", "run", "--folds", "2", "--on", "slurm"], project, check=False,
                 env={"PATH": path})
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (bin_dir / "called").exists() and not (project / "records/cv2.json").exists()


def test_a_task_whose_push_fails_is_one_line(project, tmp_path):
    """A git remote that cannot take the experiment (here one that is gone; DVC's git backend writes a local bare
    repository directly, past its hooks, so a refusing hook cannot stand in for a remote that refuses)."""
    gone = tmp_path / "gone.git"
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "dvc-remote")], project)
    git(project, "commit", "-qam", "a DVC remote")
    result = run([sys.executable, "src/sweep.py", "task", "--folds", "2", "--index", "0", "--git-remote", str(gone)],
                 project, check=False)
    assert result.returncode == 2, result.stdout[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cv2-s0-f0: dvc exp push {gone} refused it:"), last


def test_a_task_index_outside_the_sweep_is_one_line(tmp_path):
    result = run([sys.executable, str(ROOT / "src/sweep.py"), "task", "--folds", "2", "--index", "2"], tmp_path,
                 check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --index must be from 0 to 1 (this sweep has 2 runs), got 2"
