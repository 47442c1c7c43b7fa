import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
SHARED_BCCD = ROOT.parent / "shared" / "data" / "bccd"

# Settings that make the real pipeline run in about a minute on tiny synthetic data.
TINY = {
    "data": {"source": "synthetic", "synthetic": {"per_class": 10, "size": [160, 120]}},
    "clean": {"image_size": 64},
    "models": {name: {"epochs": 1, "image_size": 64, "batch_size": 16}
               for name in ("resnet", "efficientnet", "alexnet")},
}


def load_script(path):
    """A script (src/sweep.py, ...) as a module, for a test of its functions: the scripts are run, not installed."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deep_update(target, changes):
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = value
    return target


def set_params(project, changes):
    """Edit params.yaml, as `dvc repro` reads it (`dvc exp run` composes it anew from conf/)."""
    path = Path(project) / "params.yaml"
    params = deep_update(yaml.safe_load(path.read_text()), changes)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def compose(project, overrides=()):
    """params.yaml composed from conf/ with Hydra overrides, by the function `dvc exp run` uses."""
    from dvc.utils.hydra import compose_and_dump
    compose_and_dump(Path(project) / "params.yaml", str(Path(project) / "conf"), None, "config", "", list(overrides))


def set_defaults(project, changes):
    """Put `changes` over every composition of conf/ (a config applied after the dataset's recipe), and compose
    params.yaml: both `dvc repro` and `dvc exp run` then see them."""
    config = Path(project) / "conf" / "config.yaml"
    text = config.read_text()
    if "  - tiny\n" not in text:
        config.write_text(text.replace("  - dataset: bccd", "  - dataset: bccd\n  - tiny", 1))
    tiny = Path(project) / "conf" / "tiny.yaml"
    current = yaml.safe_load(tiny.read_text()) if tiny.is_file() else {}
    tiny.write_text("# @package _global_\n" + yaml.safe_dump(deep_update(current or {}, changes), sort_keys=False))
    compose(project)


def run(args, cwd, check=True, env=None):
    """Run a command in `cwd` (with `env` over the environment); return the CompletedProcess with stdout/stderr as
    text."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DVC_NO_ANALYTICS": "1", **GIT_IDENTITY, **(env or {})}
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


GIT_IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}


def git(cwd, *args):
    return run(["git", *args], cwd)


@pytest.fixture
def project(tmp_path):
    """A copy of the project's tracked files in a new git repository, set to tiny synthetic data."""
    return make_project(tmp_path)


def make_project(tmp_path):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    dest = tmp_path / "project"
    for rel in files:
        # the committed baseline (dvc.lock and the results under metrics/) belongs to the real data, not to this copy
        if rel.startswith(("tests/", ".dvc/tmp", ".dvc/cache", "metrics/")) or rel == "dvc.lock" \
                or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    set_defaults(dest, TINY)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "tiny synthetic project")
    return dest


def made_once(tmp_path_factory, name, make):
    """(folder, what `make(folder)` returned) for a project made once a test session: with pytest-xdist, by the
    worker that asks first while the others wait for it, then shared (tests only copy it)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # every worker's base folder is below this one
    folder, record = root / name, root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not record.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed to make it left
            folder.mkdir()
            record.write_text(json.dumps(make(folder)))
    return folder, json.loads(record.read_text())


@pytest.fixture(scope="session")
def reproduced_template(tmp_path_factory):
    """The tiny project after one `dvc repro` of the whole pipeline, made once a session: (its folder, that run's
    output). Tests take copies of it (`reproduced`), never the folder itself."""
    folder, output = made_once(tmp_path_factory, "reproduced",
                               lambda folder: run(["dvc", "repro"], make_project(folder)).stdout)
    return folder / "project", output


@pytest.fixture
def reproduced(reproduced_template, tmp_path):
    """A copy of the tiny project as `dvc repro` left it (outputs, dvc.lock, DVC's cache, git history): the same
    files a test would have after running it itself, without training the three models again."""
    return copy_project(reproduced_template[0], tmp_path / "project")


@pytest.fixture(scope="session")
def swept_template(tmp_path_factory):
    """The tiny project after one local 2-fold sweep with two workers (`sweep.py run --folds 2 --jobs 2`), made once a
    session: (its folder, params.yaml before the sweep, the sweep's output). Tests take copies (`swept`)."""
    def sweep(folder):
        project = make_project(folder)
        before = (project / "params.yaml").read_text()
        output = run([sys.executable, "src/sweep.py", "run", "--folds", "2", "--jobs", "2"], project).stdout
        run(["dvc", "queue", "stop"], project)  # its workers, once their tasks are done
        return before, output

    folder, (before, output) = made_once(tmp_path_factory, "swept", sweep)
    return folder / "project", before, output


@pytest.fixture
def swept(swept_template, tmp_path):
    """A copy of the tiny project as the local 2-fold sweep left it (records/cv2*, the experiments, DVC's cache)."""
    return copy_project(swept_template[0], tmp_path / "project")


def copy_project(source, dest):
    """A copy of a made project, without DVC's queue state: after a sweep, DVC's queue workers linger a while and
    delete their broker's messages under .dvc/tmp/exps while a copy would read them."""
    shutil.copytree(source, dest, symlinks=True, ignore=lambda folder, names:
                    ["exps"] if Path(folder) == Path(source) / ".dvc" / "tmp" else [])
    return dest


def stage(project, script, *args, check=True):
    return run([sys.executable, f"src/{script}.py", *args], project, check=check)


# A test that works in a copy of the project (a new git repository where DVC or a stage script runs) takes seconds
# to minutes: it is `slow`, and `pytest -m "not slow"` leaves it out of the quick loop.
SLOW_FIXTURES = {"project", "trained", "reproduced", "trained_for_resume", "swept"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
