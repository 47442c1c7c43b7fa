"""A trained checkpoint as an ONNX file that runs without this project or PyTorch (the export stage).

The graph takes uint8 crops [N, 3, C, C] as the clean stage and predict cut them (C: the crop side, any N), brings
them to the model's input side S, turns them to `view` (0-7, the dihedral views of test-time augmentation; an input
with the default 0, the crop as it is), standardises them by the model's channel statistics, and gives `logits` and
`probabilities` (with the model's temperature for one view). What else inference needs travels as JSON in
the file's metadata (key `bloodcells`): classes, crop settings, input side, statistics, both temperatures, the
machine that trained it. Reading that metadata runs no code.

Exported with PyTorch's TorchScript-based exporter (dynamo=False): about 1 s a model here against 5-14 s for the
dynamo exporter, which would also need onnxscript. That exporter cannot write torch's antialiased resize, so the
resize is written as what it is, a linear map per axis: x @ R along the width, then R^T @ (.) along the height, with R
torch's own resize of the identity. In that order it gives the same pixels as bloodcells.data.resize.
"""
import json
import warnings

import numpy as np
import torch

from bloodcells.core.atomic import atomic_file
from bloodcells.data.dataset import dihedral_index, normalise

OPSET = 17
METADATA_KEY = "bloodcells"
FORMAT = 1


def resize_matrix(side, size):
    """[side, size]: row j is where pixel j of a row goes when torch's antialiased bilinear resize brings the row
    from `side` to `size` pixels (the resize of the identity)."""
    identity = torch.eye(side)[None, None]
    return torch.nn.functional.interpolate(identity, size=(side, size), mode="bilinear", antialias=True)[0, 0]


class StandardisedModel(torch.nn.Module):
    """uint8 crops of side `side` and a view number -> (logits, probabilities): the resize to the model's side, the
    view (one of the 8 dihedral ones, as bloodcells.data.dihedral turns it, after the resize as evaluate turns it),
    the standardisation and the one-view temperature inside."""

    def __init__(self, model, side, size, mean, std, temperature):
        super().__init__()
        self.model, self.mean, self.std, self.temperature = model, list(mean), list(std), float(temperature)
        self.register_buffer("resize", resize_matrix(side, size) if side != size else None)
        self.register_buffer("views", dihedral_index(size))

    def forward(self, crops, view):
        images = crops.float()
        if self.resize is not None:  # width first, then height: bloodcells.data.resize's pixels exactly
            images = torch.matmul(self.resize.T, torch.matmul(images, self.resize)).round().clamp(0, 255)
        flat = images.flatten(2)  # a view is a rearrangement of pixels: exact
        images = flat.index_select(2, self.views[view]).view(images.shape)
        logits = self.model(normalise(images, self.mean, self.std))
        return logits, (logits / self.temperature).softmax(dim=1)


def metadata(checkpoint, checkpoint_md5):
    """What predict needs besides the graph, as plain JSON, and the MD5 of the checkpoint it was exported from."""
    keys = ("model", "arch", "classes", "image_size", "mean", "std", "crop", "temperature", "machine")
    return {"format": FORMAT, "checkpoint_md5": checkpoint_md5, **{key: getattr(checkpoint, key) for key in keys}}


def export(model, checkpoint, path, checkpoint_md5=None):
    """Write `model` (in eval mode, on the CPU) with its checkpoint's metadata to `path`, atomically."""
    import onnx  # only the export stage needs it

    temperature = (checkpoint.temperature or {}).get("single_view", 1.0)
    side = checkpoint.crop["image_size"]
    wrapped = StandardisedModel(model.float().to(memory_format=torch.contiguous_format), side,
                                checkpoint.image_size, checkpoint.mean, checkpoint.std, temperature).eval()
    example = torch.zeros(2, 3, side, side, dtype=torch.uint8), torch.tensor(0)
    with atomic_file(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and shape-inference notes
        torch.onnx.export(wrapped, example, str(tmp), input_names=["crops", "view"],
                          output_names=["logits", "probabilities"], dynamic_axes={"crops": {0: "batch"}},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
        graph = onnx.load(str(tmp))
        graph.graph.initializer.append(onnx.numpy_helper.from_array(np.array(0, dtype=np.int64), "view"))
        entry = graph.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata(checkpoint, checkpoint_md5), sort_keys=True, default=str)
        graph.producer_name, graph.doc_string = "bloodcells", f"{checkpoint.arch} for {', '.join(checkpoint.classes)}"
        onnx.save(graph, str(tmp))
