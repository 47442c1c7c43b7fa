"""A DVC remote shared by two clones: what one trained, the other gets without training."""
import shutil

from conftest import git, run, set_params
from test_pipeline import ran_stages


def test_local_remote_round_trip_shares_models_and_the_run_cache(reproduced, tmp_path):
    project, remote = reproduced, tmp_path / "remote"  # after `dvc repro`
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], project)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "baseline with a shared remote")
    run(["dvc", "push", "--run-cache"], project)
    baseline = (project / "models/resnet.pt").read_bytes()
    set_params(project, {"models": {"resnet": {"epochs": 2}}})  # a variant A trains and pushes, not commits
    run(["dvc", "repro"], project)
    run(["dvc", "push", "--run-cache"], project)  # the run record and the outputs it names
    variant = (project / "models/resnet.pt").read_bytes()
    git(project, "checkout", "-q", "--", ".")
    run(["dvc", "checkout"], project)

    clone = tmp_path / "clone-b"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    run(["dvc", "pull", "--run-cache"], clone)
    assert "up to date" in run(["dvc", "status"], clone).stdout
    assert ran_stages(run(["dvc", "repro"], clone).stdout) == set()
    assert (clone / "models/resnet.pt").read_bytes() == baseline

    set_params(clone, {"models": {"resnet": {"epochs": 2}}})
    result = run(["dvc", "repro", "--pull"], clone)
    assert "train_resnet" not in ran_stages(result.stdout)  # restored from the shared run-cache
    assert (clone / "models/resnet.pt").read_bytes() == variant

    shutil.rmtree(remote)  # a remote that cannot be written: DVC's own error, and the workspace keeps its files
    remote.write_text("a file where the remote folder was")
    failed = run(["dvc", "push"], clone, check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert (clone / "models/resnet.pt").read_bytes() == variant


def test_experiments_are_shared_with_exp_push_and_exp_pull(reproduced, tmp_path):
    project, origin = reproduced, tmp_path / "origin.git"  # after `dvc repro`
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(project, "remote", "add", "origin", str(origin))
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], project)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "baseline")
    branch = git(project, "branch", "--show-current").stdout.strip()
    git(project, "push", "-q", "origin", branch)
    run(["dvc", "push"], project)
    run(["dvc", "exp", "run", "-S", "models.resnet.epochs=2", "--name", "longer-resnet"], project)
    trained = (project / "models/resnet.pt").read_bytes()
    run(["dvc", "exp", "push", "origin", "longer-resnet"], project)  # the experiment's commit and its outputs

    clone = tmp_path / "clone-b"
    git(tmp_path, "clone", "-q", "--branch", branch, str(origin), str(clone))
    run(["dvc", "exp", "pull", "origin", "longer-resnet"], clone)
    assert "longer-resnet" in run(["dvc", "exp", "ls", "--name-only"], clone).stdout
    changed = run(["dvc", "exp", "diff", "HEAD", "longer-resnet", "--json"], clone).stdout
    assert "models.resnet.epochs" in changed
    run(["dvc", "exp", "apply", "longer-resnet"], clone)
    assert (clone / "models/resnet.pt").read_bytes() == trained  # no training on B
    assert "up to date" in run(["dvc", "status"], clone).stdout
