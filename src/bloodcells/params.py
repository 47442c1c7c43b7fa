"""Read params.yaml, the single home of every knob of the pipeline."""
from pathlib import Path

import yaml

from .errors import UserError

PARAMS_FILE = Path("params.yaml")


class Params(dict):
    """A params.yaml section: a missing key is a one-line error naming it, not a KeyError traceback."""

    def __init__(self, values, where="", fallback=None):
        super().__init__(values)
        self.where, self.fallback = where, fallback

    def __missing__(self, key):
        alternative = f" (or {self.fallback}{key})" if self.fallback else ""
        raise UserError(f"params.yaml has no {self.where}{key}{alternative}; add it (the project's params.yaml "
                        f"lists every key with its default)")

    def __getitem__(self, key):
        value = super().__getitem__(key)
        return Params(value, f"{self.where}{key}.") if isinstance(value, dict) else value


def load_params(path=PARAMS_FILE):
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run the stage from the project root")
    with open(path) as handle:
        return Params(yaml.safe_load(handle) or {})
