"""A stage stopped by Ctrl-C or SIGTERM keeps none of its outputs and no temporary file; the next run completes."""
import signal
import subprocess
import sys
import time

import pytest

from conftest import run, set_params

STOPPED_HALF_WAY = """
import os, signal, sys
from bloodcells.core.atomic import atomic_dir, write_text
from bloodcells.core.errors import stage_main

@stage_main
def main():
    write_text("out/first.json", "finished")  # one output done...
    with atomic_dir("out/second") as tmp:     # ...the next half written when the signal comes
        (tmp / "part.csv").write_text("half")
        os.kill(os.getpid(), signal.{signal})
        raise AssertionError("the signal did not stop the stage")

main()
"""


def default_signals():
    """A shell starts background jobs with Ctrl-C ignored, and Python then keeps it ignored; a terminal's
    foreground command, which this test stands for, has it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("name, code, message", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_a_signal_half_way_leaves_no_output_and_no_temporary_file(tmp_path, name, code, message):
    script = tmp_path / "stage.py"
    script.write_text(STOPPED_HALF_WAY.replace("{signal}", name))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            preexec_fn=default_signals)
    assert result.returncode == code and message in result.stderr and "Traceback" not in result.stderr
    assert list((tmp_path / "out").iterdir()) == []  # neither the finished output nor the temporary folder


def test_sigterm_during_training_keeps_no_model_and_the_next_repro_completes(project):
    run(["dvc", "repro", "clean"], project)
    set_params(project, {"models": {"resnet": {"epochs": 50}}})
    training = subprocess.Popen([sys.executable, "src/train.py", "resnet"], cwd=project,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (project / "metrics/train/resnet/metrics.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # DVCLive writes it after the first epoch
    training.send_signal(signal.SIGTERM)
    assert training.wait(timeout=60) == 143 and "terminated" in training.stderr.read()
    assert not (project / "models/resnet.pt").exists() and not list(project.rglob("*.tmp"))
    assert not (project / "metrics/train/resnet").exists()  # DVCLive's half-written record goes too
    set_params(project, {"models": {"resnet": {"epochs": 1}}})
    run(["dvc", "repro"], project)
    assert (project / "models/resnet.pt").is_file()
    assert not list(project.rglob("*.tmp"))
