"""Reading and writing checkpoint files (models/<model>.pt, weights/<model>/pretrain.pt, a state dict to start from):
the one place where a file from elsewhere is unpickled.

A PyTorch file is a pickle, and a pickle can name any Python function to call while it is read. Every read here goes
through `torch.load(weights_only=True)`, whose unpickler builds tensors, containers and plain values and refuses any
other global, with one addition allowed: `TorchVersion`, the string subclass a checkpoint's `machine` records. So a
crafted file is refused before anything of it runs. Safetensors would do the same for the weights but would need the
metadata (classes, crop, machine, temperature) moved beside them, a new format for every model already shared; this
allow-list keeps every checkpoint this project ever wrote loadable as it is, byte for byte.
"""
import pickle
import re
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from bloodcells.config.archs import ALEXNET_OPTIONS, ARCHS
from bloodcells.core.atomic import atomic_file
from bloodcells.core.errors import UserError

CONVERT = "python src/convert_model.py"
# The order a checkpoint's keys are written in: the same inputs give a byte-identical file and DVC hash.
FILE_KEYS = ("state_dict", "model", "arch", "classes", "image_size", *ALEXNET_OPTIONS, "mean", "std", "crop", "machine")
OPTIONAL_KEYS = ("temperature", "pretrained_on", "norm")


class Checkpoint(BaseModel):
    """What a model file holds: its weights, and what inference needs (the classes in the model's order, the input
    side, the channel statistics, how the clean stage cut the crops, the temperatures) and which machine made it. The
    metadata of an exported ONNX model is one too, without the weights. Checked whenever a file is read, so a file
    from elsewhere that names an unknown architecture, one class or a bad AlexNet option is one line."""
    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)

    state_dict: Any = None                            # the weights as written (None in an exported model)
    model: Literal[tuple(ARCHS)]
    arch: str
    classes: list[str]
    image_size: int
    feature_pool: Any = None
    stem_stride: Any = None
    batch_norm: Any = None
    mean: tuple[float, float, float] | list[float]
    std: tuple[float, float, float] | list[float]
    crop: dict[str, Any]
    machine: dict[str, Any] = {}
    temperature: Optional[dict[str, float]] = None    # None: a model from before calibration (temperature 1)
    pretrained_on: Optional[dict[str, Any]] = None    # starting weights learnt on another set: which, and how many
    checkpoint_md5: Optional[str] = None              # an exported model's: the checkpoint it was exported from
    norm: Optional[Literal["group"]] = None           # GroupNorm in place of batch norm (None: batch norm)

    @field_validator("classes")
    @classmethod
    def distinct_classes(cls, classes):
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be two or more different names, got {classes}")
        return classes

    @model_validator(mode="after")
    def an_architecture_of_the_family(self):
        if self.arch not in ARCHS[self.model]:
            raise ValueError(f"arch {self.arch!r} is not one of {self.model}'s ({', '.join(ARCHS[self.model])})")
        for key, (stock, small) in ALEXNET_OPTIONS.items():
            value = getattr(self, key)
            if self.model != "alexnet" and value is not None:
                raise ValueError(f"{key} applies to alexnet only")
            if value is not None and not (type(value) is type(stock) and value in (stock, small)):  # True is no stride
                raise ValueError(f"{key} must be {stock} (torchvision) or {small} (ours), got {value!r}")
        return self

    def file_dict(self):
        """The dict a checkpoint file holds, in its fixed key order."""
        values = {key: getattr(self, key) for key in FILE_KEYS}
        return values | {key: getattr(self, key) for key in OPTIONAL_KEYS if getattr(self, key) is not None}


def problem(error):
    """A pydantic error of a checkpoint in a few words."""
    detail = error.errors()[0]
    where = ".".join(str(part) for part in detail["loc"])
    message = detail["msg"].replace("Value error, ", "")
    return f"{where}: {message}" if where else message


def checked(values, source):
    """`values` as a Checkpoint, or a UserError naming `source` and what is wrong."""
    try:
        return Checkpoint.model_validate(values)
    except ValidationError as error:
        raise UserError(f"{source}: {problem(error)}") from None


def load(path, name=None, classes=None):
    """The checkpoint of a models/<name>.pt file of this project, checked. With `name`, it must hold that model,
    and with `classes` have been trained on them, in that order (the evaluate stage); every problem is a UserError
    naming the file and what to do."""
    path = Path(path)
    retrain = f"retrain it (dvc repro -f train_{name})" if name else "use a models/<name>.pt file of this project"
    if not path.is_file():
        hint = f"train it first (dvc repro train_{name})" if name else "train a model first (dvc repro) or fix --model"
        raise UserError(f"{path} not found; {hint}")
    try:
        raw = read(path)
    except UnsafeCheckpoint:
        raise
    except UserError as error:
        raise UserError(f"{error}; {retrain}") from None
    if not isinstance(raw, dict) or "state_dict" not in raw:
        raise UserError(f"{path} is not a checkpoint of this project (no state_dict); {retrain}")
    family = raw.get("model")
    if (name is not None and family != name) or family not in ARCHS or raw.get("arch") not in ARCHS[family]:
        wanted = ", ".join(ARCHS[name]) if name in ARCHS else "the project's architectures"
        raise UserError(f"{path} holds a {raw.get('arch')} model ({family}), not one of {wanted}; {retrain}")
    trained_on = list(raw.get("classes") or [])
    if len(trained_on) < 2 or (classes is not None and trained_on != list(classes)):
        wanted = f", not {list(classes)} (data/clean/classes.json)" if classes is not None else ""
        raise UserError(f"{path} was trained with classes {raw.get('classes')}{wanted}; {retrain}")
    if "crop" not in raw:
        raise UserError(f"{path} predates stored crop settings, so its crops cannot be cut again; {retrain}")
    try:
        return Checkpoint.model_validate(raw)
    except ValidationError as error:
        raise UserError(f"{path}: {problem(error)}; {retrain}") from None


def save(path, checkpoint):
    """Write a Checkpoint to `path`, atomically and byte-identically for the same inputs."""
    write(path, checkpoint.file_dict())


def allowed_globals():
    import torch
    return [torch.torch_version.TorchVersion]


class UnsafeCheckpoint(UserError):
    """The file asks to run code (or build objects this project never writes) while it is read."""


def read(path):
    """The object a checkpoint file holds, built without running anything the file names. UserError for a file that
    is missing, cut or foreign, UnsafeCheckpoint for one that would run code."""
    import torch
    path = Path(path).expanduser()
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise UnsafeCheckpoint(
                f"{path} asks to run code or build objects while it is read (the global {refused.group(1)}): refused, "
                f"nothing in it was run. Use only model files you trust; a checkpoint you wrote yourself with an "
                f"older version of this project converts with {CONVERT} {path} NEW.pt --trust") from None
        raise UserError(f"{path}: cannot read it as a checkpoint ({first_line(error)[:200]})") from None
    except Exception as error:  # torch raises several types for a cut or foreign file
        raise UserError(f"{path}: cannot read it as a checkpoint ({type(error).__name__}: {first_line(error)})") \
            from None


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def write(path, checkpoint):
    """Write atomically; a file object, because a path would put the random temporary name in the zip, and the same
    inputs must give a byte-identical file and DVC hash."""
    import torch
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        torch.save(checkpoint, handle)


def numpy_globals():
    """The numpy constructors a pickled array or scalar names: they build data and call nothing else."""
    import numpy as np
    core = np._core if hasattr(np, "_core") else np.core
    dtypes = {type(np.dtype(kind)) for kind in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
                                                np.int8, np.uint8, np.bool_)}
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def convert_trusted(source, target):
    """Rewrite an older checkpoint whose values include numpy arrays or scalars as plain tensors and values, then
    check that the result reads safely. Still the weights-only unpickler, with numpy's data constructors allowed
    besides: a file that names anything else is refused here too. Only src/convert_model.py --trust calls this."""
    import torch
    source = Path(source).expanduser()
    try:
        with torch.serialization.safe_globals(allowed_globals() + numpy_globals()):
            checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        raise UnsafeCheckpoint(f"{source} asks to run code or build objects no checkpoint holds (the global "
                               f"{refused.group(1) if refused else 'unknown'}): not converted, nothing in it was run") \
            from None
    except Exception as error:
        raise UserError(f"{source}: cannot read it as a checkpoint ({type(error).__name__}: {first_line(error)})") \
            from None
    if not isinstance(checkpoint, dict):
        raise UserError(f"{source} holds a {type(checkpoint).__name__}, not a checkpoint dict; nothing written")
    plain = {key: plain_value(value) for key, value in checkpoint.items()}
    write(target, plain)
    read(target)
    return plain


def plain_value(value):
    """Tensors, numbers, strings and containers of them; numpy values become Python ones."""
    import torch
    if torch.is_tensor(value) or value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise UserError(f"cannot convert a {type(value).__name__} into a plain checkpoint value; nothing written")
