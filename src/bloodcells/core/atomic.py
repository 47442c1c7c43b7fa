"""Write outputs so that a crash or Ctrl-C never leaves a half-written file or folder.

Every output replaced through this module is remembered, so that a stage that fails or is stopped half way
can remove the outputs it had already finished (discard_written): it leaves all of them or none.
"""
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

_written = []


@contextlib.contextmanager
def atomic_file(path, output=True):
    """Yield a temporary path next to `path`; it replaces `path` only if the block succeeds. A file that is not an
    `output` of the stage (a training run's saved state) is kept when the stage fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
        if output:
            _written.append(path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder next to `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        _written.append(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def discard_on_failure(path):
    """Count `path`, written by a library rather than through this module (DVCLive's folder), as an output to
    remove if the stage fails or is stopped."""
    _written.append(Path(path))


def discard_written():
    """Remove every output this process wrote; returns how many."""
    removed = 0
    while _written:
        path = _written.pop()
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed += 1
    return removed


def write_json(path, data):
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path, text):
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def save_figure(figure, path):
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=110, bbox_inches="tight")
