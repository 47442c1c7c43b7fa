"""A DVC remote shared by two clones: what one trained, the other gets without training."""
import shutil

from conftest import git, run, set_params
from test_pipeline import ran_stages


def test_local_remote_round_trip_shares_models_and_the_run_cache(project, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], project)
    run(["dvc", "repro"], project)
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
