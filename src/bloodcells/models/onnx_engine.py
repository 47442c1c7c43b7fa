"""Inference from a models/<model>.onnx file with ONNX Runtime, without importing torch (`predict --engine onnx`).

The same steps as bloodcells.models.inference: the prepared crop (the graph resizes it to the model's input side and turns it
to each view after that, as evaluate does), the 8 dihedral views averaged with test-time augmentation, then the
model's temperature.
"""
import json
from pathlib import Path

import numpy as np

from bloodcells.models import checkpoints
from bloodcells.models.calibration import apply_temperature, temperature_for
from bloodcells.core.errors import UserError

METADATA_KEY = "bloodcells"  # as bloodcells.models.onnx_export writes it
INSTALL = "pip install onnxruntime==1.32.0"


class OnnxModel:
    """A session of one exported model; `checkpoint` holds its metadata in the shape of a checkpoint's."""

    def __init__(self, path):
        path = Path(path)
        try:
            import onnxruntime
        except ImportError:
            raise UserError(f"--engine onnx needs ONNX Runtime, which is not installed: {INSTALL}, "
                            "or use --engine torch") from None
        if not path.is_file():
            raise UserError(f"{path} not found; export the models first (dvc repro export) or fix --model")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime raises its own types for a file that is no model
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"{path}: cannot read it as an ONNX model ({reason[:200]}); "
                            "use a models/<name>.onnx file of this project") from None
        found = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if found is None:
            raise UserError(f"{path} is an ONNX model but not one of this project (no '{METADATA_KEY}' metadata: "
                            "classes, crop, statistics); export one with dvc repro export")
        try:
            metadata = json.loads(found)
        except json.JSONDecodeError:
            raise UserError(f"{path}: its '{METADATA_KEY}' metadata is not JSON; export it again (dvc repro export)") \
                from None
        self.checkpoint = checkpoints.checked(metadata, f"{path}'s metadata (export it again: dvc repro export)")
        inputs = [node.name for node in self.session.get_inputs() + self.session.get_overridable_initializers()]
        if inputs != ["crops", "view"]:  # view has a default: ONNX Runtime lists it among the overridable initialisers
            raise UserError(f"{path}: its inputs are not this project's (crops, view); export it again (dvc repro export)")

    def probabilities(self, crops, batch_size=64, tta=False):
        """Calibrated class probabilities [N, classes] of prepared crops ([C, C, 3] uint8 arrays, C the crop side)."""
        inputs = np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))
        views = range(8) if tta else (0,)
        outputs = []
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start:start + batch_size]
            total = 0
            for view in views:
                logits = self.session.run(["logits"], {"crops": batch, "view": np.array(view, dtype=np.int64)})[0]
                total = total + softmax(logits)
            outputs.append((total / len(views)).astype(np.float32))
        return apply_temperature(np.concatenate(outputs), temperature_for(self.checkpoint.temperature, tta))


def softmax(logits):
    logits = logits.astype(np.float32)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)
