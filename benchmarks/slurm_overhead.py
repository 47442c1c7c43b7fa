"""Slurm's overhead per task: the same 2-fold sweep of tiny synthetic data run by DVC's local queue (--jobs 1) and by
Slurm (--on slurm, one task at a time on this machine), timed in one run.

Usage: SLURM_CONF=$(.ci/slurm/start DIR) python benchmarks/slurm_overhead.py [--threads 2]
It works in a temporary clone of this repository's HEAD with a bare git repository and a local DVC remote, as
tests/test_slurm.py does, and prints the two wall times; .ci/slurm/stop DIR afterwards.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from dvc.utils.hydra import compose_and_dump

TINY = {  # as tests/conftest.py's: the real pipeline in about a minute a run
    "data": {"source": "synthetic", "synthetic": {"per_class": 10, "size": [160, 120]}},
    "clean": {"image_size": 64},
    "models": {name: {"epochs": 1, "image_size": 64, "batch_size": 16} for name in ("resnet", "efficientnet", "alexnet")},
}


def make_tiny(project):
    """Put TINY over every composition of conf/ (dvc exp run composes params.yaml anew), and compose params.yaml."""
    config = project / "conf/config.yaml"
    config.write_text(config.read_text().replace("  - dataset: bccd", "  - dataset: bccd\n  - tiny", 1))
    (project / "conf/tiny.yaml").write_text("# @package _global_\n" + yaml.safe_dump(TINY, sort_keys=False))
    compose_and_dump(project / "params.yaml", str(project / "conf"), None, "config", "", [])


def sh(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not os.environ.get("SLURM_CONF") and not Path("/etc/slurm/slurm.conf").exists():
        sys.exit("no Slurm cluster: start one with .ci/slurm/start DIR and export the SLURM_CONF it prints")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        project = folder / "project"
        sh("git", "clone", "-q", str(Path.cwd()), str(project), cwd=folder)
        sh("git", "init", "-q", "--bare", str(folder / "origin.git"), cwd=folder)
        make_tiny(project)
        sh("dvc", "remote", "add", "-d", "shared", str(folder / "dvc-remote"), cwd=project)
        sh("git", "add", "-A", cwd=project)
        sh("git", "commit", "-qm", "tiny synthetic data", cwd=project)
        sh("git", "remote", "set-url", "origin", str(folder / "origin.git"), cwd=project)
        sh("git", "push", "-q", "origin", "HEAD:main", cwd=project)
        sh("git", "branch", "-q", "-u", "origin/main", cwd=project)
        common = [sys.executable, "src/sweep.py", "run", "--folds", "2", "-S", f"train.threads={args.threads}"]
        times = {}
        for label, extra in (("local queue, --jobs 1", ["--jobs", "1", "--record", "local"]),
                             ("Slurm, one task at a time", ["--on", "slurm", "--record", "slurm"])):
            started = time.perf_counter()
            sh(*common, *extra, cwd=project)
            times[label] = time.perf_counter() - started
        for label, seconds in times.items():
            print(f"{label}: {seconds / 60:.2f} min")
        print(f"Slurm's overhead: {(times['Slurm, one task at a time'] - times['local queue, --jobs 1']) / 2:.0f} s "
              "per task (2 tasks)")


if __name__ == "__main__":
    main()
