"""Read params.yaml, the single home of every knob of the pipeline."""
from pathlib import Path

import yaml

from bloodcells.config import schema
from bloodcells.core.errors import UserError

PARAMS_FILE = Path("params.yaml")


class DuplicateKey(yaml.YAMLError):
    """A key given twice in one mapping: PyYAML would keep the last value silently (DVC's own reader refuses it)."""


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping, naming it and both lines."""

    def construct_mapping(self, node, deep=False):
        first_line = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool, type(None))):
                continue  # an unhashable key is the schema's to refuse
            if key in first_line:
                raise DuplicateKey(f"key {key!r} is given twice, on lines {first_line[key]} and {line}; keep one")
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def read_params(path=PARAMS_FILE):
    """params.yaml as plain data, unchecked: for code that passes its values on (the sweep's -S settings), not for a
    stage that is configured by them."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run the stage from the project root")
    try:
        with open(path) as handle:
            params = yaml.load(handle, Loader=StrictLoader) or {}
    except DuplicateKey as error:
        raise UserError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where} ({getattr(error, 'problem', error)}); fix the file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror})") from None
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected sections such as data: and train:, got a {type(params).__name__}")
    return params


def load_params(sections=(), path=PARAMS_FILE):
    """The validated schema.Config of params.yaml's `sections` (every problem reported at once)."""
    return schema.validate(read_params(path), sections, str(path))
