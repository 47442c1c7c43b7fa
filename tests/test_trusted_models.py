"""Models a laboratory can take from elsewhere: files that cannot run code, calibrated probabilities, abstaining.
(ONNX, predict's engines and the model card run on a trained project: tests/test_predict.py.)"""
import os
import pickle
import sys

import numpy as np
import pytest
import torch

from bloodcells.evaluation import abstention
from bloodcells.models import calibration, checkpoints
from bloodcells.core.errors import UserError
from bloodcells.models.inference import fit_temperatures
from bloodcells.evaluation.metrics import expected_calibration_error
from bloodcells.models.factory import build_model
from conftest import ROOT, run


class RunsCode:
    """Unpickling this calls os.system: what a crafted model file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_files(folder, marker):
    """A checkpoint-shaped file that runs a command when unpickled, in torch's zip format and in its legacy format,
    and as a plain pickle."""
    payload = {"state_dict": {"w": torch.zeros(2)}, "model": "resnet", "arch": "resnet18", "hook": RunsCode(marker)}
    zipped, legacy, plain = folder / "evil.pt", folder / "evil_legacy.pt", folder / "evil.pkl"
    torch.save(payload, zipped)
    torch.save(payload, legacy, _use_new_zipfile_serialization=False)
    plain.write_bytes(pickle.dumps(payload))
    return zipped, legacy, plain


def test_a_crafted_checkpoint_is_refused_before_it_runs_anything(tmp_path):
    marker = tmp_path / "it-ran"
    zipped, legacy, plain = crafted_files(tmp_path, marker)
    for path in (zipped, legacy):
        with pytest.raises(checkpoints.UnsafeCheckpoint, match="refused, nothing in it was run"):
            checkpoints.read(path)
        assert not marker.exists(), path
    with pytest.raises(UserError, match="cannot read it as a checkpoint"):  # not torch's format at all
        checkpoints.read(plain)
    assert not marker.exists()
    with pytest.raises(checkpoints.UnsafeCheckpoint, match="posix.system"):
        checkpoints.read(tmp_path / "evil.pt")


@pytest.mark.parametrize("script", ["predict", "transfer", "train-weights"])
def test_every_reader_of_a_model_file_refuses_a_crafted_one_in_one_line(tmp_path, script):
    """predict (the torch engine), benchmarks/transfer.py and a training start (models.<name>.weights): exit 2, one
    line, no command run. evaluate and external read models/<name>.pt through the same load_checkpoint."""
    marker = tmp_path / "it-ran"
    for path in crafted_files(tmp_path, marker)[:2]:
        if script == "predict":
            result = run([sys.executable, "src/predict.py", str(tmp_path), "--model", str(path)], ROOT, check=False)
        elif script == "transfer":
            result = run([sys.executable, "benchmarks/transfer.py", "--set", str(tmp_path), str(path)], ROOT,
                         check=False)
        else:
            result = run([sys.executable, "-c", ""
                          "from bloodcells.core.errors import stage_main; from bloodcells.models.factory import read_weights;"
                          f"stage_main(lambda: read_weights({str(path)!r}, 'resnet'))()"], ROOT, check=False)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "refused, nothing in it was run" in lines[0]
        assert "--trust" in lines[0] and not marker.exists()


def test_a_checkpoint_of_this_project_reads_safely_and_an_older_foreign_one_converts_only_with_trust(tmp_path):
    model = build_model("alexnet", "alexnet", 64, num_classes=4, stem_stride=2, feature_pool=1, batch_norm=True)
    good = {"state_dict": model.state_dict(), "classes": ["A", "B", "C", "D"], "machine": {"torch": torch.__version__},
            "crop": {"crop": "wbc"}, "temperature": {"single_view": 0.8, "tta": 0.7}}
    checkpoints.write(tmp_path / "good.pt", good)
    read = checkpoints.read(tmp_path / "good.pt")
    assert read["machine"]["torch"] == torch.__version__ and read["temperature"] == good["temperature"]
    assert all(torch.equal(read["state_dict"][k], v) for k, v in good["state_dict"].items())

    older = {**good, "mean": np.array([0.5, 0.5, 0.5]), "epochs": np.int64(3)}  # numpy objects: not plain values
    torch.save(older, tmp_path / "older.pt")
    with pytest.raises(checkpoints.UnsafeCheckpoint):
        checkpoints.read(tmp_path / "older.pt")
    refused = run([sys.executable, "src/convert_model.py", str(tmp_path / "older.pt"), str(tmp_path / "new.pt")], ROOT,
                  check=False)
    assert refused.returncode == 2 and "--trust" in refused.stderr and not (tmp_path / "new.pt").exists()
    run([sys.executable, "src/convert_model.py", str(tmp_path / "older.pt"), str(tmp_path / "new.pt"), "--trust"], ROOT)
    converted = checkpoints.read(tmp_path / "new.pt")
    assert converted["mean"] == [0.5, 0.5, 0.5] and converted["epochs"] == 3
    assert all(torch.equal(converted["state_dict"][k], v) for k, v in good["state_dict"].items())
    marker = tmp_path / "it-ran"  # even with --trust, the converter runs nothing a file names
    evil = crafted_files(tmp_path, marker)[0]
    refused = run([sys.executable, "src/convert_model.py", str(evil), str(tmp_path / "evil-new.pt"), "--trust"], ROOT,
                  check=False)
    assert refused.returncode == 2 and "nothing in it was run" in refused.stderr and not marker.exists()
    assert not (tmp_path / "evil-new.pt").exists()


def softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_temperature_scaling_finds_the_temperature_that_made_the_labels_and_keeps_every_answer(true_temperature):
    """Labels drawn from softmax(logits / T): the fitted T is T within sampling error, the calibration error falls,
    and no top class changes."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 4))
    labels = np.array([rng.choice(4, p=p) for p in softmax(logits / true_temperature)])
    stated = softmax(logits).astype(np.float32)
    fitted = calibration.fit_temperature(stated, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)
    calibrated = calibration.apply_temperature(stated, fitted)
    assert calibrated.dtype == np.float32 and np.allclose(calibrated.sum(axis=1), 1, atol=1e-5)
    assert (calibrated.argmax(axis=1) == stated.argmax(axis=1)).all()
    assert expected_calibration_error(labels, calibrated) < expected_calibration_error(labels, stated) / 2
    assert calibration.apply_temperature(stated, 1.0) is stated


def test_a_model_without_a_temperature_keeps_its_probabilities():
    assert calibration.temperature_for(None, tta=True) == 1.0
    assert calibration.temperature_for({"single_view": 0.7, "tta": 0.6}, tta=False) == 0.7
    assert calibration.fit_temperature(np.zeros((0, 4)), np.zeros(0, dtype=int)) == 1.0


def test_fitting_the_temperature_leaves_the_weights_bit_for_bit():
    """train.py fits the temperature after the weights are final: they (and so the models' weights) stay as trained."""
    torch.manual_seed(0)
    model = build_model("resnet", "resnet18", 64, num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randint(0, 256, (12, 3, 64, 64), dtype=torch.uint8)
    found = fit_temperatures(model, images, torch.tensor([0, 1, 2] * 4), [0.5] * 3, [0.25] * 3)
    assert set(found) == set(calibration.MODES) and all(0.02 <= t <= 50 for t in found.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_risk_coverage_curve_answers_the_most_confident_first():
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    actual = np.array([0, 0, 1, 0, 1])  # right, right, wrong, wrong, right
    curve = abstention.risk_coverage_curve(actual, probabilities)
    assert [(r["threshold"], r["coverage"], r["accuracy"]) for r in curve] == [
        (0.9, 0.2, 1.0), (0.8, 0.6, pytest.approx(2 / 3)), (0.7, 0.8, 0.5), (0.55, 1.0, 0.6)]
    summary, _ = abstention.abstention_summary(actual, probabilities)
    assert summary["accuracy_at_coverage_0.95"] == 0.5 and summary["accuracy_at_coverage_0.90"] == 0.5
    assert summary["coverage_at_accuracy_0.99"] == 0.2 and summary["threshold_for_accuracy_0.99"] == 0.9
    wrong_first = abstention.abstention_summary(np.array([1, 0]), np.array([[0.9, 0.1], [0.6, 0.4]]))[0]
    assert wrong_first["coverage_at_accuracy_0.99"] == 0.0 and wrong_first["threshold_for_accuracy_0.99"] is None


def test_a_missing_file_and_a_file_that_is_no_checkpoint_are_one_line_each(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read it as a checkpoint"):
        checkpoints.read(tmp_path / "notes.pt")
    with pytest.raises(UserError, match="cannot read it as a checkpoint"):
        checkpoints.read(tmp_path / "absent.pt")
