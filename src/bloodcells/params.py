"""Read params.yaml, the single home of every knob of the pipeline."""
from pathlib import Path

import yaml

from .errors import UserError

PARAMS_FILE = Path("params.yaml")


def load_params(path=PARAMS_FILE):
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run the stage from the project root")
    with open(path) as handle:
        return yaml.safe_load(handle) or {}
