"""Read params.yaml, the single home of every knob of the pipeline."""
from pathlib import Path

import yaml

from . import schema
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


def load_params(sections=(), path=PARAMS_FILE):
    """params.yaml, with `sections` checked against the declared schema (every problem reported at once)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run the stage from the project root")
    try:
        with open(path) as handle:
            params = yaml.safe_load(handle) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where} ({getattr(error, 'problem', error)}); fix the file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror})") from None
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected sections such as data: and train:, got a {type(params).__name__}")
    schema.validate(params, sections, str(path))
    return Params(params)
