"""What a sweep runs: its -S settings, the record's name, the experiments (one per fold, data seed and training
seed) and the `dvc exp run` arguments of each."""
import os
import re
from pathlib import Path

from bloodcells.core.errors import UserError
from bloodcells.data import sources

RESERVED = {"train.seed": "--train-seeds", "data.seed": "--seeds", "data.folds": "--folds", "data.fold": "--folds"}


def parse_settings(assignments):
    """-S assignments (`key=value`, as dvc exp run takes them) -> {key: value}, in their order; the one place that
    splits them."""
    settings = {}
    for assignment in assignments:
        key, equals, value = assignment.partition("=")
        if not equals or not key.strip():
            raise UserError(f"-S {assignment}: give key=value, as dvc exp run -S takes it")
        settings[key.strip()] = value.strip()
    return settings


def assignments(settings):
    return [f"{key}={value}" for key, value in settings.items()]


def is_path_key(key):
    """data.source, pretrain.source, external.sets.<name>.source: a path, which belongs to one machine, so it never
    names a record and a record names the copy by what it holds."""
    return key == "source" or key.endswith(".source")


def recorded_settings(settings, manifest=None):
    """The settings as a record keeps them: data.source apart (the record's data), any other path by what its copy
    holds, never by a path of this machine."""
    return {key: f"<{sources.describe_source(value, manifest)}>" if is_path_key(key) else value
            for key, value in settings.items() if key != "data.source"}


def record_name(folds, seeds, train_seeds, settings, only_folds=None):
    """The default record name: `defaults` for params.yaml as it is, else the settings that differ from it (a dataset
    recipe by its name, a key without its section and its value) and any seeds or fold count other than the
    defaults'."""
    parts = []
    for key, value in parse_settings(settings).items():
        if key == "dataset":  # a recipe of conf/dataset/: its name
            parts.append(value)
        elif not is_path_key(key):
            parts.append("_".join(key.split(".")[1:] or [key]) + "_" + value)
    if folds != 5:
        parts.append(f"cv{folds}" if folds else "random_splits")
    if only_folds:
        parts.append("folds_" + "-".join(map(str, only_folds)))
    if list(seeds) != [0]:
        parts.append("seeds_" + "-".join(map(str, seeds)))
    if train_seeds:
        parts.append("train_seeds_" + "-".join(map(str, train_seeds)))
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)) if parts else "defaults"


def planned_runs(folds, seeds, train_seeds, only_folds=None):
    """(data seed, fold or None, training seed or None) of every experiment, in run order."""
    return [(seed, fold, train_seed) for seed in seeds for fold in (only_folds or range(folds) if folds else [None])
            for train_seed in train_seeds or [None]]


def experiment_name(folds, seed, fold, train_seed):
    name = f"cv{folds}-s{seed}-f{fold}" if folds else f"split-{seed}"
    return name + (f"-train-{train_seed}" if train_seed is not None else "")


def experiment_args(folds, seed, fold, train_seed, settings):
    """The `dvc exp run` arguments of one run (after `run`, without --name)."""
    args = ["-S", f"data.seed={seed}", "-S", f"data.folds={folds}"]
    if fold is not None:
        args += ["-S", f"data.fold={fold}"]
    if train_seed is not None:
        args += ["-S", f"train.seed={train_seed}"]
    for assignment in assignments(parse_settings(settings)):
        args += ["-S", assignment]
    return args


def run_settings(jobs, settings, source):
    """The -S settings every queued run gets: the user's, an absolute path for every local copy (queued runs work
    in a temporary copy of the repository) and, with several workers, a share of the cores each. `source` is
    params.yaml's data.source."""
    given = parse_settings(settings)
    result = dict(given)
    paths = {key: value for key, value in given.items() if is_path_key(key)}
    paths.setdefault("data.source", str(source))
    for key, source in paths.items():
        if source not in sources.KNOWN_SOURCES and not Path(source).is_absolute():
            absolute = Path(source).expanduser().resolve()
            result.pop(key, None)
            result[key] = str(absolute)
            print(f"{key} {source} is relative; queued runs get {absolute}")
    if jobs > 1 and "train.threads" not in given:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        result["train.threads"] = str(threads)
        print(f"{jobs} workers: each run trains with train.threads={threads} (the thread count changes the last "
              "bits of the weights, so these runs are not bit-identical to ones with another count)")
    return assignments(result)
