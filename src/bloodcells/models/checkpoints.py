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

import torch

from bloodcells.core.atomic import atomic_file
from bloodcells.core.errors import UserError

ALLOWED_GLOBALS = [torch.torch_version.TorchVersion]
CONVERT = "python src/convert_model.py"


class UnsafeCheckpoint(UserError):
    """The file asks to run code (or build objects this project never writes) while it is read."""


def read(path):
    """The object a checkpoint file holds, built without running anything the file names. UserError for a file that
    is missing, cut or foreign, UnsafeCheckpoint for one that would run code."""
    path = Path(path).expanduser()
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
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
    source = Path(source).expanduser()
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS + numpy_globals()):
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
    if torch.is_tensor(value) or value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise UserError(f"cannot convert a {type(value).__name__} into a plain checkpoint value; nothing written")
