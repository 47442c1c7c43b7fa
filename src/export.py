"""Stage export: every trained model as ONNX and a model card, next to its checkpoint.

Per model: models/<model>.onnx (uint8 crops in, logits and calibrated probabilities out, the metadata inference needs
inside: bloodcells.models.onnx_export) and models/<model>.md (its model card, drawn from this run's records and
docs/cross_laboratory.json: bloodcells.models.card).
"""
import json
from pathlib import Path

from bloodcells.data import classes as class_list
from bloodcells.core.atomic import write_text
from bloodcells.core.digests import file_digest
from bloodcells.core.errors import UserError, stage_main
from bloodcells.models.inference import load_checkpoint
from bloodcells.models.card import render
from bloodcells.models.onnx_export import export
from bloodcells.config.archs import ARCHS
from bloodcells.config.params import load_params

MODEL_DIR = Path("models")
CROSS_LAB = Path("docs/cross_laboratory.json")


def read_json(path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; run the stage that writes it first (dvc repro)")
    return json.loads(path.read_text())


@stage_main
def main():
    source = load_params(("data",)).data.source
    classes = class_list.read()
    cross_lab = read_json(CROSS_LAB)
    data = read_json("metrics/data.json")
    for name in ARCHS:  # dvc.yaml names each family's outputs
        path = MODEL_DIR / f"{name}.pt"
        model, checkpoint = load_checkpoint(path, name, classes)
        export(model.cpu(), checkpoint, path.with_suffix(".onnx"), file_digest(path, "md5"))
        card = render(name, checkpoint, read_json(f"metrics/evaluate/{name}.json"), data,
                      read_json(f"metrics/train/{name}/metrics.json"), source, path, cross_lab)
        write_text(path.with_suffix(".md"), card)
        print(f"{name}: {path.with_suffix('.onnx')} and its model card {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
