"""A sweep's records, one per configuration, in records/: <record>.json holds the structured fields (the
configuration, how the runs were made, the machines, the pooled report), <record>.md is drawn from them, and
<record>_predictions.csv keeps every run's test predictions (git-ignored: running the sweep makes it again).
Nothing here reads prose back: the description is written from the fields, never parsed."""
import json
from pathlib import Path

from bloodcells.core.errors import UserError

RECORDS_DIR = Path("records")
EVERY_IMAGE = "every image tested once per seed"
OF_SOME_FOLDS = "(each of their images tested once per seed)"


def record_paths(record):
    """(report .json, report .md, kept predictions .csv) of one configuration's record."""
    stem = RECORDS_DIR / record
    return stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_name(f"{record}_predictions.csv")


def comparison_path(record, baseline):
    return RECORDS_DIR / f"{record}_vs_{baseline}.md"


def configuration(folds, data_seeds, train_seeds, settings, data, only_folds=None):
    """What a record's runs share: the folds and seeds, the data (by what it holds) and the -S settings (a path
    setting by what its copy holds), as stored in the record."""
    return {"folds": folds, "only_folds": sorted(only_folds) if only_folds else None,
            "data_seeds": list(data_seeds), "train_seeds": list(train_seeds) if train_seeds else None,
            "data": data, "settings": dict(settings)}


def made(runs, how, workers=None, minutes=None, merged_from=None, failed=None):
    """How a record's runs were made: queued on DVC's queue (workers, minutes), on Slurm (minutes, the runs that failed
    twice), collected, or merged from records."""
    made = {"runs": runs, "how": how, "workers": workers, "minutes": minutes, "merged_from": merged_from}
    return made | ({"failed": failed or []} if how == "slurm" else {})


def tested_folds(only_folds):
    return f"folds {', '.join(map(str, only_folds))} only {OF_SOME_FOLDS}" if only_folds else EVERY_IMAGE


def describe_configuration(config):
    """The configuration in words: `5-fold cross-validation, data seeds 0 (every image ...); data: bccd; with ...`."""
    seeds = ", ".join(map(str, config["data_seeds"]))
    how = (f"{config['folds']}-fold cross-validation, data seeds {seeds} ({tested_folds(config['only_folds'])})"
           if config["folds"] else f"random splits with seeds {seeds} (test sets overlap)")
    if config["train_seeds"]:
        how += f", training seeds {', '.join(map(str, config['train_seeds']))}"
    how += f"; data: {config['data']}"
    settings = " ".join(f"{key}={value}" for key, value in config["settings"].items())
    return how + (f"; with {settings}" if settings else "") + "."


def describe_made(made):
    if made["how"] == "merged":
        return f"{made['runs']} runs, merged from records {', '.join(made['merged_from'])}."
    if made["how"] == "collected":
        return f"{made['runs']} runs, collected."
    if made["how"] == "slurm":
        failed = f"; failed twice, left out: {', '.join(made['failed'])}" if made.get("failed") else ""
        return f"{made['runs']} runs on Slurm, {made['minutes']} min{failed}."
    return f"{made['runs']} runs, {made['workers']} worker(s), {made['minutes']} min."


def description(record):
    """The record's first line, drawn from its fields."""
    return f"{describe_configuration(record['configuration'])} {describe_made(record['made'])}"


def merged_configuration(configurations, folds_run):
    """The configuration of records merged: theirs, which must agree but for the folds they ran, with the folds of
    all of them."""
    def without_folds(config):
        return {key: value for key, value in config.items() if key != "only_folds"}
    (first, config), *others = configurations.items()
    for record, other in others:
        if without_folds(other) != without_folds(config):
            raise UserError(f"records {first} and {record} were made with other settings "
                            f"({describe_configuration({**config, 'only_folds': None})!r} against "
                            f"{describe_configuration({**other, 'only_folds': None})!r}); merge records of one "
                            "configuration only")
    if not config["folds"]:
        raise UserError("only records of K-fold cross-validation merge (random splits overlap)")
    folds_run = sorted(folds_run)
    return {**config, "only_folds": None if folds_run == list(range(config["folds"])) else folds_run}


def read(record, what="record"):
    path = record_paths(record)[0]
    if not path.is_file():
        raise UserError(f"{path} not found; run that {what}'s sweep first (or name it with the record's name)")
    return json.loads(path.read_text())


def read_predictions_path(record):
    """The kept predictions of a record, which only running its sweep on this machine writes."""
    path = record_paths(record)[2]
    if not path.is_file():
        raise UserError(f"{path} not found; run that record's sweep on this machine first (the kept predictions "
                        "are not in git)")
    return path
