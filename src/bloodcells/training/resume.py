"""A training run's whole state, saved at the end of every epoch, so that a run stopped at epoch k (Ctrl-C, an
out-of-memory kill, a Slurm preemption) continues from epoch k and ends with the bytes of a run never stopped.

The state lives in DVC's temporary folder, `.dvc/tmp/resume/<experiment>/<stage>/state.pt`: DVC keeps that folder
between runs and never caches, pushes or hashes it, whereas a `persist: true` output would be an output all the same
(hashed into dvc.lock after each run, so it would have to exist when the run ends, when the state is removed).
BLOODCELLS_RESUME_DIR moves the root: the sweep points its queued runs, each in a temporary copy of the repository,
at the workspace's folder. A state is resumed only under the fingerprint it was saved with (the recipe, the data,
the starting weights, the code, the CPU kind and threads); otherwise the run says which differs and starts again.
"""
import builtins
import hashlib
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

import bloodcells
from bloodcells.core.atomic import atomic_file
from bloodcells.training import distributed, machine

ROOT_VARIABLE = "BLOODCELLS_RESUME_DIR"
DEFAULT_ROOT = Path(".dvc/tmp/resume")
STATE_FILE = "state.pt"
# what the CPU kind is made of in machine.record; the device, torch and threads count as well
MACHINE_KEYS = ("device", "gpu", "cpu", "cpu_avx2", "cpu_avx512", "cpu_avx512_bf16", "cpu_amx_bf16",
                "torch_cpu_kernels", "torch", "threads", "onednn_max_cpu_isa")
FINGERPRINT_PARTS = {"recipe": "the parameters", "data": "the training or validation data",
                     "start": "the starting weights", "code": "the code", "machine": "the machine"}


def slot(stage):
    """The folder of `stage`'s state (train_resnet, pretrain_alexnet) in this experiment (DVC_EXP_NAME, which DVC
    sets for `dvc exp run`; the workspace otherwise)."""
    root = Path(os.environ.get(ROOT_VARIABLE) or DEFAULT_ROOT)
    return root / (os.environ.get("DVC_EXP_NAME") or "workspace") / stage


def tensor_digest(*tensors):
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def code_digest(script):
    """The stage script and every module of the library, by content."""
    digest = hashlib.sha256()
    package = Path(bloodcells.__file__).parent
    for path in [Path(script), *sorted(package.rglob("*.py"))]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(cfg, model, train_set, val_set, mean, std, device, script=None):
    """What must be the same for a saved state to continue this run: each part hashed or spelled out."""
    made_on = machine.record(device, torch.get_num_threads(), cfg.precision)
    return {
        "recipe": cfg.model_dump(mode="json"),
        "data": tensor_digest(train_set.images, train_set.labels, val_set.images, val_set.labels,
                              torch.tensor(mean), torch.tensor(std)),
        "start": tensor_digest(*model.state_dict().values()),
        "code": code_digest(script or sys.argv[0]),
        "machine": {**{key: made_on[key] for key in MACHINE_KEYS if key in made_on},
                    "processes": distributed.world()[1]},
    }


def differences(saved, current):
    """What differs between two fingerprints, in words ('the parameters (lr, epochs)', 'the code')."""
    said = []
    for part, words in FINGERPRINT_PARTS.items():
        before, now = saved.get(part), current.get(part)
        if before == now:
            continue
        if isinstance(now, dict) and isinstance(before, dict):
            keys = sorted(key for key in set(before) | set(now) if before.get(key) != now.get(key))
            words += f" ({', '.join(keys)})"
        said.append(words)
    return said


def random_states(generators):
    """Every random generator a run draws from: torch's, numpy's and python's global ones, CUDA's, and `generators`
    ({name: torch.Generator or numpy Generator})."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),  # an array is not for torch.load's reader
              "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss)}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    for name, generator in generators.items():
        states[name] = (generator.get_state() if isinstance(generator, torch.Generator)
                        else generator.bit_generator.state)
    return states


def restore_random_states(states, generators):
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for name, generator in generators.items():
        if isinstance(generator, torch.Generator):
            generator.set_state(states[name])
        else:
            generator.bit_generator.state = states[name]


class SavedRun:
    """The saved state of one stage's training run under one fingerprint."""

    def __init__(self, stage, fingerprint_now):
        self.stage, self.fingerprint = stage, fingerprint_now
        self.path = slot(stage) / STATE_FILE

    def load(self):
        """The state saved by an earlier run of this one, or None (saying in one line why one was not used; process
        0 of several says it)."""
        print = builtins.print if distributed.world()[0] == 0 else (lambda *args, **kwargs: None)
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            saved_fingerprint, epoch = json.loads(state["fingerprint"]), state["epoch"]
        except Exception as error:  # written whole or not at all, but a disk can still fail: never trust it
            print(f"{self.stage}: the saved state {self.path} cannot be read ({type(error).__name__}); "
                  "starting again")
            return None
        changed = differences(saved_fingerprint, self.fingerprint)
        if changed:
            print(f"{self.stage}: not resuming the state saved after epoch {epoch}: {' and '.join(changed)} "
                  "changed since; starting again")
            return None
        print(f"{self.stage}: resuming after epoch {epoch}, from the state saved by the run that stopped "
              f"({self.path})")
        return state

    def save(self, state):
        """Replace the saved state with `state` (a dict of tensors and plain values), all or nothing."""
        with atomic_file(self.path, output=False) as tmp:  # no fsync: a state lost to a power cut is not read
            torch.save({**state, "fingerprint": json.dumps(self.fingerprint, sort_keys=True)}, tmp)

    def remove(self):
        """The run completed: its state is of no more use."""
        self.path.unlink(missing_ok=True)
        for folder in (self.path.parent, self.path.parent.parent):
            try:
                folder.rmdir()
            except OSError:
                break
