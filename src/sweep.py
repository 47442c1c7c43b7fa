"""Cross-validate the pipeline as DVC experiments; report pooled scores with intervals and paired tests.

Usage: python src/sweep.py [--folds 5] [--only-folds 0 1] [--repeats 1 | --seeds 0 1 ...] [--train-seeds 0 1]
                           [-S key=value ...] [--jobs N]
       python src/sweep.py --report-only
       python src/sweep.py --record start_pbc --against defaults
       python src/sweep.py --merge pbc_folds_0-2 pbc_folds_3-4 --record pbc

With --folds K (K >= 2, default 5) every test fold k of a stratified K-fold partition is one queued
`dvc exp run --queue -S data.folds=K -S data.fold=k -S data.seed=S --name cv5-s0-f0`, so every cleaned image
is tested exactly once per repeat (--only-folds runs some of them: a recipe chosen on those folds is then
reported on the others); --repeats R reshuffles the folds with data seeds 0 .. R-1 (or give
them with --seeds). With --train-seeds each fold is trained once per training seed. --folds 0 runs
the old random split (clean.test_size) once per --seeds seed, named split-S. The runs go through DVC's
own queue: --jobs N starts N workers (`dvc queue start -j N`), each in a temporary copy of the repository,
so the workspace is left as it was; a run's results are read from its experiment commit.

Each configuration has its own record, metrics/sweep_<record>.md and .json: --record names it; by default
it is `defaults` for params.yaml as it is, else named after the -S settings and seeds (-S clean.locator=stain:
`locator_stain`). The test predictions of every run are kept in metrics/sweep_<record>_predictions.csv
(git-ignored: it holds the dataset's labels, which are not ours to commit); from them the record reports,
per model, accuracy, macro sensitivity and specificity pooled over all test predictions with 95 % bootstrap
intervals (resampling images), the per-fold spread, AUC, kappa and calibration, and for every pair of models
the accuracy difference with McNemar's exact test. --report-only recomputes a record from its kept predictions;
--merge pools records of one configuration made on different folds (a sweep run some folds at a time).
"""
import argparse
import io
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from bloodcells.experiments import queue as exp_queue, comparison as record_comparison, merging as record_merging
from bloodcells.data import sources
from bloodcells.core.atomic import atomic_file, write_json, write_text
from bloodcells.core.errors import UserError, stage_main
from bloodcells.evaluation.metrics import classification_metrics
from bloodcells.config.params import load_params
from bloodcells.evaluation.stats import bootstrap_intervals, describe_pair, paired_comparisons
from bloodcells.experiments.records import RECORDS_DIR, record_paths

SCORES = ("accuracy", "macro_sensitivity", "macro_specificity")
EXTRA_SCORES = ("balanced_accuracy", "cohen_kappa", "macro_roc_auc", "expected_calibration_error")


def is_path_key(key):
    """data.source, pretrain.source, external.sets.<name>.source: a path, which belongs to one machine, so it never
    names a record and a record names the copy by what it holds."""
    return key.strip() == "source" or key.strip().endswith(".source")


def record_name(folds, seeds, train_seeds, extra_sets, only_folds=None):
    """The default record name: `defaults` for params.yaml as it is, else the settings that differ from it
    (a dataset recipe by its name, a key without its section and its value) and any seeds or fold count other than the defaults'."""
    parts = []
    for assignment in extra_sets:
        key, _, value = assignment.partition("=")
        if key.strip() == "dataset":  # a recipe of conf/dataset/: its name
            parts.append(value.strip())
        elif not is_path_key(key):
            parts.append("_".join(key.strip().split(".")[1:] or [key.strip()]) + "_" + value.strip())
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


def experiment_args(folds, seed, fold, train_seed, extra_sets):
    """The `dvc exp run` arguments of one run (after `run`, without --name)."""
    args = ["-S", f"data.seed={seed}", "-S", f"data.folds={folds}"]
    if fold is not None:
        args += ["-S", f"data.fold={fold}"]
    if train_seed is not None:
        args += ["-S", f"train.seed={train_seed}"]
    for assignment in extra_sets:
        args += ["-S", assignment]
    return args


def collect_predictions(name, models, seed, fold, train_seed, baseline=None):
    """The test predictions of every model (metrics/evaluate/predictions/<model>.csv, kept in git) as experiment
    `name` (queued on commit `baseline`) committed them, labelled by run."""
    frames = []
    for model in models:
        text = exp_queue.read_file(name, f"metrics/evaluate/predictions/{model}.csv", baseline)
        frame = pd.read_csv(io.StringIO(text))
        frame.insert(0, "model", model)
        frame.insert(0, "train_seed", -1 if train_seed is None else train_seed)
        frame.insert(0, "fold", -1 if fold is None else fold)
        frame.insert(0, "data_seed", seed)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def trained_on(names, baseline=None):
    """Which machines trained the runs, and in which precision: the lines of each experiment's compare.md that say
    so (compare.md is kept in git; the machine records themselves are cached outputs)."""
    lines = set()
    for name in names:
        try:
            text = exp_queue.read_file(name, "metrics/compare.md", baseline)
        except UserError:
            continue
        lines |= {line.strip("- ").strip() for line in text.splitlines()
                  if line.startswith(("Trained on", "- ", "Precision:")) and ("trained on" in line.lower()
                                                                              or line.startswith("Precision:"))}
    return sorted(lines) or ["not recorded"]


def prediction_classes(frame):
    """The classes of kept predictions, in the models' order: evaluate writes a p_<class> column for each."""
    return [column[2:] for column in frame.columns if column.startswith("p_")]


def arrays(frame, classes):
    position = {name: i for i, name in enumerate(classes)}
    actual = frame["actual"].map(position).to_numpy()
    predicted = frame["predicted"].map(position).to_numpy()
    return actual, predicted, frame[[f"p_{name}" for name in classes]].to_numpy()


def model_report(frame):
    """Scores pooled over every test prediction of one model, with bootstrap intervals over images, and the spread
    of the per-run (per-fold) accuracies."""
    classes = prediction_classes(frame)
    actual, predicted, probabilities = arrays(frame, classes)
    pooled = classification_metrics(actual, predicted, probabilities, classes=classes)
    intervals = bootstrap_intervals(frame["image"], actual, predicted)
    per_fold = [float((g["actual"] == g["predicted"]).mean())
                for _, g in frame.groupby(["data_seed", "fold", "train_seed"], sort=True)]
    return {
        "n_predictions": int(len(frame)),
        "n_images": int(frame["image"].nunique()),
        **{score: {"value": pooled[score], "ci95": intervals[score]} for score in SCORES},
        **{score: pooled[score] for score in EXTRA_SCORES},
        "roc_auc": pooled["roc_auc"],
        "per_class": pooled["per_class"],
        "confusion_matrix": pooled["confusion_matrix"],
        "per_fold_accuracy": {"values": per_fold, "mean": statistics.fmean(per_fold),
                              "std": statistics.stdev(per_fold) if len(per_fold) > 1 else 0.0,
                              "min": min(per_fold), "max": max(per_fold)},
    }


def report(predictions, source="the kept predictions"):
    """The sweep's report from all kept predictions (one row per model, run and test image)."""
    models = list(dict.fromkeys(predictions["model"]))
    per_model = {name: model_report(predictions[predictions["model"] == name]) for name in models}
    keys = ["data_seed", "fold", "train_seed", "image"]
    aligned = {name: predictions[predictions["model"] == name].set_index(keys).sort_index() for name in models}
    index = aligned[models[0]].index
    for name in models:
        if not aligned[name].index.equals(index):
            raise UserError(f"{source}: {name} was not scored on the same test images as {models[0]}; "
                            "re-run the sweep")
    correct = {name: (aligned[name]["actual"] == aligned[name]["predicted"]).to_numpy() for name in models}
    replicates = [f"seed {s}" + (f", train seed {t}" if t >= 0 else "")
                  for s, _, t, _ in index]
    pairs = paired_comparisons(correct, index.get_level_values("image"), replicates)
    return {"models": per_model, "pairs": pairs, "missed_by_every_model": missed_by_every_model(predictions)}


def missed_by_every_model(predictions):
    """The test images that every model got wrong in every run that tested them, with what each called them."""
    wrong = predictions.assign(wrong=predictions["actual"] != predictions["predicted"])
    always = wrong.groupby("image")["wrong"].all()
    rows = []
    for image in always[always].index:
        answers = wrong[wrong["image"] == image]
        rows.append({"image": image, "label": answers["actual"].iloc[0],
                     "called": {name: sorted(set(group["predicted"])) for name, group in answers.groupby("model")}})
    return rows


def markdown(summary, description):
    made_on = summary.get("trained_on", [])
    lines = [description, *(["", "Trained on:", "", *[f"- {line}" for line in made_on]] if made_on else []), "",
             "| model | accuracy (95% CI) | macro sensitivity (95% CI) | macro specificity (95% CI) | "
             "per-fold accuracy mean ± sd (min-max) | balanced accuracy | Cohen's kappa | macro ROC AUC | ECE |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in summary["models"].items():
        cells = [f"{row[s]['value']:.3f} ({row[s]['ci95'][0]:.3f}-{row[s]['ci95'][1]:.3f})" for s in SCORES]
        spread = row["per_fold_accuracy"]
        cells.append(f"{spread['mean']:.3f} ± {spread['std']:.3f} ({spread['min']:.3f}-{spread['max']:.3f})")
        auc = "n/a" if row["macro_roc_auc"] is None else f"{row['macro_roc_auc']:.3f}"
        cells += [f"{row['balanced_accuracy']:.3f}", f"{row['cohen_kappa']:.3f}", auc,
                  f"{row['expected_calibration_error']:.3f}"]
        lines.append(f"| {name} ({row['n_predictions']} predictions of {row['n_images']} images) | "
                     + " | ".join(cells) + " |")
    lines += ["", "Paired comparisons on the same test images:", ""]
    lines += [f"- {describe_pair(pair)}" for pair in summary["pairs"]]
    missed = summary["missed_by_every_model"]
    lines += ["", f"Test images every model got wrong every time ({len(missed)}):", ""]
    lines += [f"- {row['image']}, labelled {row['label']}: "
              + ", ".join(f"{name} {'/'.join(called)}" for name, called in row["called"].items()) for row in missed]
    return "\n".join(lines) + "\n"


def display_name(model, params):
    """ResNet18, EfficientNet-b0, AlexNet: the arch of params.yaml, as the README names it."""
    arch = params.get("models", {}).get(model, {}).get("arch", model)
    return {"resnet18": "ResNet18", "resnet34": "ResNet34", "resnet50": "ResNet50",
            "alexnet": "AlexNet"}.get(arch, arch.replace("efficientnet", "EfficientNet"))


def readme_tables(summary, params):
    """The README's Results tables of a record: the pooled scores, then the paired tests (what `--readme-table`
    prints, and what tests/test_docs.py holds the README to)."""
    lines = ["| model | accuracy | macro sensitivity | macro specificity | per-fold accuracy (min-max) | "
             "balanced accuracy | Cohen's kappa | macro ROC AUC | ECE |", "|---|---|---|---|---|---|---|---|---|"]
    for model, row in summary["models"].items():
        low, high = row["accuracy"]["ci95"]
        cells = [f"**{row['accuracy']['value']:.3f}** ({low:.3f}-{high:.3f})"]
        cells += [f"{row[s]['value']:.3f} ({row[s]['ci95'][0]:.3f}-{row[s]['ci95'][1]:.3f})" for s in SCORES[1:]]
        spread = row["per_fold_accuracy"]
        cells.append(f"{spread['mean']:.3f} ± {spread['std']:.3f} ({spread['min']:.3f}-{spread['max']:.3f})")
        auc = "n/a" if row["macro_roc_auc"] is None else f"{row['macro_roc_auc']:.3f}"
        cells += [f"{row['balanced_accuracy']:.3f}", f"{row['cohen_kappa']:.3f}", auc,
                  f"{row['expected_calibration_error']:.3f}"]
        lines.append(f"| {display_name(model, params)} | " + " | ".join(cells) + " |")
    lines += ["", "| pair | accuracy difference | only the first right / only the second right | McNemar p | Holm p |",
              "|---|---|---|---|---|"]
    for pair in summary["pairs"]:
        low, high = (100 * bound for bound in pair["difference_ci95"])
        tests = pair["mcnemar"]
        counts = "; ".join(f"{t['only_a_right']} / {t['only_b_right']}" for t in tests)
        p_values = "; ".join(f"{t['p_value']:.2g}" for t in tests)
        holm = "; ".join(f"{t['p_holm']:.2g}" for t in tests)
        lines.append(f"| {display_name(pair['a'], params)} vs {display_name(pair['b'], params)} | "
                     f"{100 * pair['difference']:+.1f} points ({low:+.1f} to {high:+.1f}) | {counts} | {p_values} | {holm} |")
    return "\n".join(lines) + "\n"


EVERY_IMAGE = "every image tested once per seed"
OF_SOME_FOLDS = "(each of their images tested once per seed)"
SOME_FOLDS = re.compile(r"folds [0-9, ]+ only " + re.escape(OF_SOME_FOLDS))
RUN_COUNT = re.compile(r" [0-9]+ runs, (collected|[0-9]+ worker\(s\), [0-9]+ min|merged from records .*)\.$")


def tested_folds(only_folds):
    return f"folds {', '.join(map(str, only_folds))} only {OF_SOME_FOLDS}" if only_folds else EVERY_IMAGE


def describe(folds, seeds, train_seeds, extra_sets, data_source, only_folds=None):
    """The record's first line: the folds and seeds, the data (a local copy by what it holds, never by a path of
    this machine) and the settings that differ from params.yaml."""
    tested = tested_folds(only_folds)
    how = (f"{folds}-fold cross-validation, data seeds {', '.join(map(str, seeds))} ({tested})"
           if folds else f"random splits with seeds {', '.join(map(str, seeds))} (test sets overlap)")
    if train_seeds:
        how += f", training seeds {', '.join(map(str, train_seeds))}"
    how += f"; data: {data_source}"
    settings = []
    for assignment in extra_sets:
        key, _, value = assignment.partition("=")
        if key.strip() != "data.source":
            settings.append(f"{key}=<{sources.describe_source(value.strip(), None)}>" if is_path_key(key)
                            else assignment)
    return how + (f"; with {' '.join(settings)}" if settings else "") + "."


def merged_description(descriptions, folds_run):
    """The description of records merged: theirs, which must agree but for the folds they ran, with the folds of
    all of them."""
    configurations = {name: SOME_FOLDS.sub(EVERY_IMAGE, RUN_COUNT.sub("", text)) for name, text in descriptions.items()}
    (first, configuration), *others = configurations.items()
    for record, other in others:
        if other != configuration:
            raise UserError(f"records {first} and {record} were made with other settings ({configuration!r} against "
                            f"{other!r}); merge records of one configuration only")
    folds = re.match(r"([0-9]+)-fold cross-validation", configuration)
    if folds is None:
        raise UserError("only records of K-fold cross-validation merge (random splits overlap)")
    if sorted(folds_run) != list(range(int(folds.group(1)))):
        configuration = configuration.replace(EVERY_IMAGE, tested_folds(sorted(folds_run)), 1)
    return configuration


def merge(records, record):
    """Pool the kept predictions of `records` into `record`, and report it."""
    kept, earlier = {}, {}
    for name in records:
        report_json, _, path = record_paths(name)
        if not path.is_file() or not report_json.is_file():
            raise UserError(f"{path if not path.is_file() else report_json} not found; run that record's sweep on "
                            "this machine first (the kept predictions are not in git)")
        kept[name], earlier[name] = pd.read_csv(path), json.loads(report_json.read_text())
    predictions = record_merging.merge_predictions(kept)
    description = merged_description({name: e.get("description", "") for name, e in earlier.items()},
                                     set(predictions["fold"]))
    runs = len(record_merging.runs_of(predictions))
    with atomic_file(record_paths(record)[2]) as tmp:
        predictions.to_csv(tmp, index=False)
    made_on = sorted({line for e in earlier.values() for line in e.get("trained_on", [])})
    write_report(predictions, f"{description} {runs} runs, merged from records {', '.join(records)}.", record,
                 str(record_paths(record)[2]), made_on)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5, help="K of K-fold cross-validation (0: random splits)")
    parser.add_argument("--only-folds", type=int, nargs="+", default=None, metavar="K",
                        help="run these test folds only (choose a recipe on some folds, report it on the others)")
    parser.add_argument("--repeats", type=int, default=1, help="reshuffle the folds R times (data seeds 0 .. R-1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="data seeds (instead of --repeats)")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=None,
                        help="train every fold once per training seed (default: params.yaml's train.seed)")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="extra parameter for every run, as in dvc exp run -S")
    parser.add_argument("-j", "--jobs", type=int, default=1,
                        help="DVC queue workers running experiments at once (each trains with train.threads = "
                             "cores / jobs unless -S train.threads=... is given)")
    parser.add_argument("--record", help="name of this configuration's record, metrics/sweep_<record>.md/.json "
                                         "(default: defaults, or named after the -S settings and seeds)")
    parser.add_argument("--report-only", action="store_true", help="recompute the record from its kept predictions")
    parser.add_argument("--readme-table", action="store_true",
                        help="print the record's tables as the README's Results shows them, and exit")
    parser.add_argument("--against", metavar="RECORD",
                        help="compare this record with another, model by model on the same images (McNemar), from "
                             "both records' kept predictions, into metrics/sweep_<record>_vs_<RECORD>.md, and exit")
    parser.add_argument("--collect-only", action="store_true",
                        help="queue nothing: collect the finished experiments of these arguments and report")
    parser.add_argument("--queued-on", metavar="COMMIT",
                        help="with --collect-only: the commit the runs were queued on, if a commit was made since "
                             "(default: the current one)")
    parser.add_argument("--merge", nargs="+", metavar="RECORD",
                        help="pool records of one configuration made on different folds (--only-folds) into the "
                             "record named by --record, and exit")
    args = parser.parse_args()
    if args.merge is not None:
        if args.record is None:
            raise UserError("--merge needs --record NAME: the name of the merged record")
        if len(args.merge) < 2 or len(set(args.merge)) != len(args.merge) or args.record in args.merge:
            raise UserError(f"--merge takes two or more different records other than --record {args.record}, got "
                            f"{' '.join(args.merge)}")
    if args.queued_on and not args.collect_only:
        raise UserError("--queued-on goes with --collect-only: a sweep queues its runs on the current commit")
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if args.folds == 1 or args.folds < 0:
        raise UserError(f"--folds must be 0 (random splits) or at least 2, got {args.folds}")
    if args.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {args.repeats}")
    args.seeds = args.seeds if args.seeds is not None else list(range(args.repeats))
    if args.record is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.record):
        raise UserError(f"--record must be a plain name (letters, digits, . _ -), got {args.record!r}")
    if args.only_folds and not all(0 <= fold < args.folds for fold in args.only_folds):
        raise UserError(f"--only-folds must name folds from 0 to --folds - 1 = {args.folds - 1}, got "
                        f"{' '.join(map(str, args.only_folds))}" if args.folds else
                        "--only-folds needs K-fold cross-validation (--folds 2 or more), not random splits")
    args.record = args.record or record_name(args.folds, args.seeds, args.train_seeds, args.set_param,
                                             args.only_folds)
    for option, values, what in (("--seeds", args.seeds, "seed"), ("--train-seeds", args.train_seeds or [], "seed"),
                                 ("--only-folds", args.only_folds or [], "fold")):
        if len(set(values)) != len(values):
            raise UserError(f"{option} repeats a {what} ({' '.join(map(str, values))}); give each {what} once")
    reserved = {"train.seed": "--train-seeds", "data.seed": "--seeds", "data.folds": "--folds", "data.fold": "--folds"}
    for assignment in args.set_param:
        key = assignment.split("=")[0].strip()
        if key in reserved and (key != "train.seed" or args.train_seeds):
            raise UserError(f"give {key} with {reserved[key]}, not with -S {assignment}")
    return args


def write_report(predictions, description, record, source="the kept predictions", made_on=()):
    report_json, report_md, _ = record_paths(record)
    summary = {**report(predictions, source), "trained_on": list(made_on)}
    write_json(report_json, {"description": description, **summary})
    table = markdown(summary, description)
    write_text(report_md, table)
    print(table)
    print(f"record: {report_md} and {report_json}")


def run_settings(args, params):
    """Extra -S settings every queued run needs: an absolute local data.source (queued runs work in a temporary
    copy of the repository) and, with several workers, a share of the cores each."""
    sets = list(args.set_param)
    given = {assignment.split("=")[0].strip(): assignment.split("=", 1)[1].strip() for assignment in sets}
    paths = {key: value for key, value in given.items() if is_path_key(key)}
    paths.setdefault("data.source", str(params["data"]["source"]))
    for key, source in paths.items():
        if source not in ("bccd", "kaggle", "synthetic") and not Path(source).is_absolute():
            absolute = Path(source).expanduser().resolve()
            sets = [s for s in sets if s.split("=")[0].strip() != key] + [f"{key}={absolute}"]
            print(f"{key} {source} is relative; queued runs get {absolute}")
    if args.jobs > 1 and "train.threads" not in given:
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        sets.append(f"train.threads={threads}")
        print(f"{args.jobs} workers: each run trains with train.threads={threads} (the thread count changes the last "
              "bits of the weights, so these runs are not bit-identical to ones with another count)")
    return sets


@stage_main
def main():
    args = parse_args()
    report_json, _, kept = record_paths(args.record)
    if args.merge:
        merge(args.merge, args.record)
        return
    if args.readme_table:
        if not report_json.is_file():
            raise UserError(f"{report_json} not found; run the sweep first (or name the record with --record)")
        print(readme_tables(json.loads(report_json.read_text()), load_params()), end="")
        return
    if args.against:
        baseline_kept = record_paths(args.against)[2]
        for path in (kept, baseline_kept):
            if not path.is_file():
                raise UserError(f"{path} not found; run that record's sweep on this machine first (the kept "
                                "predictions are not in git)")
        pairs = record_comparison.compare_records(pd.read_csv(kept), pd.read_csv(baseline_kept), args.record,
                                                  args.against)
        table = record_comparison.markdown(pairs, args.record, args.against)
        write_text(RECORDS_DIR / f"sweep_{args.record}_vs_{args.against}.md", table)
        print(table, end="")
        return
    if args.report_only:
        if not kept.is_file():
            raise UserError(f"{kept} not found; run the sweep first (or name the record with --record)")
        earlier = json.loads(report_json.read_text()) if report_json.is_file() else {}
        write_report(pd.read_csv(kept), earlier.get("description", ""), args.record, str(kept),
                     earlier.get("trained_on", []))
        return
    params = load_params()
    models = list(params["models"])
    sets = run_settings(args, params)
    runs = {experiment_name(args.folds, *run): run
            for run in planned_runs(args.folds, args.seeds, args.train_seeds, args.only_folds)}
    started = time.perf_counter()
    baseline = exp_queue.commit_of(args.queued_on or "HEAD")  # runs belong to the commit they were queued on
    if not args.collect_only:
        for name, run in runs.items():
            exp_queue.queue(experiment_args(args.folds, *run, sets), name)
        print(f"queued {len(runs)} experiments; starting {args.jobs} DVC queue worker(s) "
              "(`dvc queue status`, `dvc queue logs NAME` from another shell)", flush=True)
        exp_queue.start_workers(args.jobs)
        outcome = exp_queue.wait(list(runs), started)
        failed = [name for name, state in outcome.items() if state != "Success"]
        if failed:
            raise UserError(f"{len(failed)} of {len(runs)} experiments failed ({', '.join(failed)}; logs above and "
                            "in `dvc queue logs NAME`); fix the cause and re-run the sweep")
    predictions = pd.concat([collect_predictions(name, models, *run, baseline) for name, run in runs.items()],
                            ignore_index=True)
    with atomic_file(kept) as tmp:
        predictions.to_csv(tmp, index=False)
    given = {a.split("=", 1)[0].strip(): a.split("=", 1)[1].strip() for a in args.set_param if "=" in a}
    data_source = sources.describe_source(given.get("data.source", params["data"]["source"]),
                                          params["fetch"]["manifest"])
    description = describe(args.folds, args.seeds, args.train_seeds, sets, data_source, args.only_folds)
    minutes = (time.perf_counter() - started) / 60
    how = "collected" if args.collect_only else f"{args.jobs} worker(s), {minutes:.0f} min"
    write_report(predictions, f"{description} {len(runs)} runs, {how}.", args.record, str(kept),
                 trained_on(runs, baseline))


if __name__ == "__main__":
    sys.exit(main())
