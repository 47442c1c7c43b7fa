"""Cross-validate the pipeline as DVC experiments; report pooled scores with intervals and paired tests.

Usage: python src/sweep.py run [--folds 5] [--only-folds 0 1] [--repeats 1 | --seeds 0 1 ...] [--train-seeds 0 1]
                               [-S key=value ...] [--jobs N] [--record NAME] [--collect-only [--queued-on COMMIT]]
                               [--on slurm [--git-remote origin] [--partition P] [--time T] [--gpus G]]
       python src/sweep.py task --index I [the run's --folds/--seeds/... -S ...]   one run, then dvc exp push
       python src/sweep.py report RECORD                  recompute a record from its kept predictions
       python src/sweep.py merge RECORD RECORD ... --record NAME    pool records of one configuration, other folds
       python src/sweep.py against RECORD BASELINE        McNemar per model, on the same images
       python src/sweep.py readme RECORD                  the record's tables as the README's Results show them

`run` queues one `dvc exp run --queue -S data.folds=K -S data.fold=k -S data.seed=S --name cv5-s0-f0` per test fold k
of a stratified K-fold partition (K >= 2, default 5), so every cleaned image is tested exactly once per repeat
(--only-folds runs some of them: a recipe chosen on those folds is then reported on the others); --repeats R
reshuffles the folds with data seeds 0 .. R-1 (or give them with --seeds); with --train-seeds each fold is trained
once per training seed; --folds 0 runs the old random split (clean.test_size) once per seed, named split-S. The runs
go through DVC's own queue: --jobs N starts N workers, each in a temporary copy of the repository, so the workspace is
left as it was; a run's results are read from its experiment commit. With --on slurm each run is a Slurm array task
that clones the commit from the git remote, runs `sweep.py task` and pushes its experiment to the git and DVC remotes;
the sweep pulls them back (bloodcells.experiments.slurm; a CI matrix calls `task` the same way).

Each configuration has its own record in records/ (bloodcells.experiments.records): --record names it; by default it
is `defaults` for params.yaml as it is, else named after the -S settings and seeds (-S clean.locator=stain:
`locator_stain`). <record>.json holds the configuration, how the runs were made, the machines and the pooled report
(bloodcells.experiments.report) as data, <record>.md is drawn from it, and <record>_predictions.csv keeps every run's
test predictions (git-ignored: running the sweep makes it again).
"""
import argparse
import io
import json
import re
import subprocess
import time

import pandas as pd

from bloodcells.config.params import load_params, read_params
from bloodcells.core.atomic import atomic_file, write_json, write_text
from bloodcells.core.errors import UserError, stage_main
from bloodcells.data import sources
from bloodcells.experiments import comparison, merging, plan, queue, records, slurm
from bloodcells.experiments.report import markdown, readme_tables, report
from bloodcells.training.machine import trained_on_lines

RECORD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def collect_predictions(name, models, seed, fold, train_seed, baseline=None):
    """The test predictions of every model (metrics/evaluate/predictions/<model>.csv, kept in git) as experiment
    `name` (queued on commit `baseline`) committed them, labelled by run."""
    frames = []
    for model in models:
        text = queue.read_file(name, f"metrics/evaluate/predictions/{model}.csv", baseline)
        frame = pd.read_csv(io.StringIO(text))
        frame.insert(0, "model", model)
        frame.insert(0, "train_seed", -1 if train_seed is None else train_seed)
        frame.insert(0, "fold", -1 if fold is None else fold)
        frame.insert(0, "data_seed", seed)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def trained_on(names, baseline=None):
    """Which machines trained the runs, and in which precision, from each experiment's metrics/machines.json (kept
    in git by the compare stage; the machine records themselves are cached outputs)."""
    lines = set()
    for name in names:
        try:
            machines = json.loads(queue.read_file(name, "metrics/machines.json", baseline))
        except UserError:
            continue
        lines |= set(trained_on_lines(machines))
    return sorted(lines) or ["not recorded"]


def write_record(name, predictions, configuration, made, machines, source="the kept predictions"):
    """The record as data (records/<name>.json) and its Markdown drawn from it (records/<name>.md)."""
    report_json, report_md, _ = records.record_paths(name)
    record = {"record": name, "description": None, "configuration": configuration, "made": made,
              "trained_on": list(machines)}
    record["description"] = records.description(record)
    record |= report(predictions, source)
    write_json(report_json, record)
    table = markdown(record, record["description"])
    write_text(report_md, table)
    print(table)
    print(f"record: {report_md} and {report_json}")


def check_record_name(name, option="--record"):
    if not RECORD_NAME.fullmatch(name):
        raise UserError(f"{option} must be a plain name (letters, digits, . _ -), got {name!r}")
    return name


def run(args):
    """Queue every run of the configuration on DVC's queue or Slurm (or collect finished ones), then write its
    record."""
    config = load_params(("models", "fetch"))
    models = list(config.models)
    params = read_params()  # unchecked: a dataset's recipe may leave data.source to -S data.source
    source = params["data"]["source"]
    url = slurm.check_ready(args.git_remote)[0] if args.on == "slurm" and not args.collect_only else None
    settings = plan.run_settings(1 if args.on == "slurm" else args.jobs, args.set_param, source)
    runs = {plan.experiment_name(args.folds, *run): run
            for run in plan.planned_runs(args.folds, args.seeds, args.train_seeds, args.only_folds)}
    started = time.perf_counter()
    baseline = queue.commit_of(args.queued_on or "HEAD")  # runs belong to the commit they were queued on
    failed = []
    if args.on == "slurm":
        url = url or slurm.git("remote", "get-url", args.git_remote).stdout.strip()
        if not args.collect_only:
            threads = plan.parse_settings(settings).get("train.threads", params["train"]["threads"])
            succeeded, failed = slurm.run_sweep(args.record, list(runs), task_arguments(args, settings), url,
                                                baseline, slurm_options(args, threads))
            runs = {name: runs[name] for name in succeeded}
            if not runs:
                raise UserError(f"every run failed twice on Slurm ({', '.join(failed)}); the end of each log is above "
                                f"and all of it in {slurm.JOBS_DIR / args.record}; nothing was collected")
        slurm.pull(url, list(runs))
    elif not args.collect_only:
        for name, planned in runs.items():
            queue.queue(plan.experiment_args(args.folds, *planned, settings), name)
        print(f"queued {len(runs)} experiments; starting {args.jobs} DVC queue worker(s) "
              "(`dvc queue status`, `dvc queue logs NAME` from another shell)", flush=True)
        queue.start_workers(args.jobs)
        outcome = queue.wait(list(runs), started)
        failed = [name for name, state in outcome.items() if state != "Success"]
        if failed:
            raise UserError(f"{len(failed)} of {len(runs)} experiments failed ({', '.join(failed)}; logs above and "
                            "in `dvc queue logs NAME`); fix the cause and re-run the sweep")
    predictions = pd.concat([collect_predictions(name, models, *planned, baseline) for name, planned in runs.items()],
                            ignore_index=True)
    kept = records.record_paths(args.record)[2]
    with atomic_file(kept) as tmp:
        predictions.to_csv(tmp, index=False)
    given = plan.parse_settings(args.set_param)
    data = sources.describe_source(given.get("data.source", source), config.fetch.manifest)
    configuration = records.configuration(args.folds, args.seeds, args.train_seeds,
                                          plan.recorded_settings(plan.parse_settings(settings)), data,
                                          args.only_folds)
    minutes = round((time.perf_counter() - started) / 60)
    made = (records.made(len(runs), "collected") if args.collect_only else
            records.made(len(runs), "slurm", minutes=minutes, failed=failed) if args.on == "slurm" else
            records.made(len(runs), "queued", workers=args.jobs, minutes=minutes))
    write_record(args.record, predictions, configuration, made, trained_on(runs, baseline), str(kept))
    if failed:
        raise UserError(f"{len(failed)} run(s) failed twice on Slurm ({', '.join(failed)}; their logs in "
                        f"{slurm.JOBS_DIR / args.record}); the record holds the other {len(runs)} and names them")


def task_arguments(args, settings):
    """The arguments of `sweep.py task` that plan the same runs with the same settings (the sweep's -S settings as
    run_settings made them: absolute paths)."""
    arguments = ["--folds", str(args.folds), "--seeds", *map(str, args.seeds)]
    if args.train_seeds:
        arguments += ["--train-seeds", *map(str, args.train_seeds)]
    if args.only_folds:
        arguments += ["--only-folds", *map(str, args.only_folds)]
    return arguments + [part for setting in settings for part in ("-S", setting)]


def slurm_options(args, threads):
    options = [f"--cpus-per-task={threads}"]
    options += [f"--partition={args.partition}"] if args.partition else []
    options += [f"--time={args.time}"] if args.time else []
    return options + ([f"--gpus={args.gpus}"] if args.gpus else [])


def task(args):
    """One run of a sweep, in a clone at the sweep's commit (a Slurm task, a CI matrix job): `dvc exp run` it, then
    `dvc exp push` it to the git remote (its outputs to the default DVC remote)."""
    planned = plan.planned_runs(args.folds, args.seeds, args.train_seeds, args.only_folds)
    if not 0 <= args.index < len(planned):
        raise UserError(f"--index must be from 0 to {len(planned) - 1} (this sweep has {len(planned)} runs), got "
                        f"{args.index}")
    name = plan.experiment_name(args.folds, *planned[args.index])
    print(f"run {args.index + 1} of {len(planned)}: {name}", flush=True)
    ran = subprocess.run(["dvc", "exp", "run", "--name", name,
                          *plan.experiment_args(args.folds, *planned[args.index], args.set_param)])
    if ran.returncode != 0:
        raise UserError(f"{name}: dvc exp run failed (exit {ran.returncode}; its output above)")
    pushed = subprocess.run(["dvc", "exp", "push", "--force", args.git_remote, name], capture_output=True, text=True)
    if pushed.returncode != 0 or name not in slurm.pushed(args.git_remote, queue.commit_of(), [name]):
        said = " ".join((pushed.stderr or pushed.stdout).split())  # DVC can exit 0 when the remote refused the refs
        raise UserError(f"{name}: dvc exp push {args.git_remote} refused it: {said or 'no experiment ref arrived'}")
    print(f"{name}: pushed to {args.git_remote}")


def recompute(args):
    """The record again from its kept predictions, its configuration and machines as they were."""
    kept = records.read_predictions_path(args.record)
    earlier = records.read(args.record)
    write_record(args.record, pd.read_csv(kept), earlier["configuration"], earlier["made"], earlier["trained_on"],
                 str(kept))


def merge(args):
    """Pool the kept predictions of records of one configuration, made on different folds, into one record."""
    if args.record is None:
        raise UserError("merge needs --record NAME: the name of the merged record")
    if len(args.records) < 2 or len(set(args.records)) != len(args.records) or args.record in args.records:
        raise UserError(f"merge takes two or more different records other than --record {args.record}, got "
                        f"{' '.join(args.records)}")
    kept, earlier = {}, {}
    for name in args.records:
        path = records.read_predictions_path(name)
        kept[name], earlier[name] = pd.read_csv(path), records.read(name)
    predictions = merging.merge_predictions(kept)
    configuration = records.merged_configuration({name: e["configuration"] for name, e in earlier.items()},
                                                 set(predictions["fold"]))
    with atomic_file(records.record_paths(args.record)[2]) as tmp:
        predictions.to_csv(tmp, index=False)
    made = records.made(len(merging.runs_of(predictions)), "merged", merged_from=list(args.records))
    machines = sorted({line for e in earlier.values() for line in e["trained_on"]})
    write_record(args.record, predictions, configuration, made, machines, str(records.record_paths(args.record)[2]))


def against(args):
    """The record against a baseline record, model by model on the same test images."""
    changed, baseline = (pd.read_csv(records.read_predictions_path(name)) for name in (args.record, args.baseline))
    pairs = comparison.compare_records(changed, baseline, args.record, args.baseline)
    table = comparison.markdown(pairs, args.record, args.baseline)
    write_text(records.comparison_path(args.record, args.baseline), table)
    print(table, end="")


def readme(args):
    archs = {name: model.arch for name, model in load_params(("models",)).models.items()}
    print(readme_tables(records.read(args.record), archs), end="")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="run | task | report | merge | against | readme")
    runs = commands.add_parser("run", help="cross-validate as DVC experiments and write the record")
    runs.add_argument("--folds", type=int, default=5, help="K of K-fold cross-validation (0: random splits)")
    runs.add_argument("--only-folds", type=int, nargs="+", default=None, metavar="K",
                      help="run these test folds only (choose a recipe on some folds, report it on the others)")
    runs.add_argument("--repeats", type=int, default=1, help="reshuffle the folds R times (data seeds 0 .. R-1)")
    runs.add_argument("--seeds", type=int, nargs="+", default=None, help="data seeds (instead of --repeats)")
    runs.add_argument("--train-seeds", type=int, nargs="+", default=None,
                      help="train every fold once per training seed (default: params.yaml's train.seed)")
    runs.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                      help="extra parameter for every run, as in dvc exp run -S")
    runs.add_argument("-j", "--jobs", type=int, default=1,
                      help="DVC queue workers running experiments at once (each trains with train.threads = "
                           "cores / jobs unless -S train.threads=... is given)")
    runs.add_argument("--record", help="name of this configuration's record, records/<record>.json/.md (default: "
                                       "defaults, or named after the -S settings and seeds)")
    runs.add_argument("--collect-only", action="store_true",
                      help="queue nothing: collect the finished experiments of these arguments and report")
    runs.add_argument("--queued-on", metavar="COMMIT",
                      help="with --collect-only: the commit the runs were queued on, if a commit was made since "
                           "(default: the current one)")
    runs.add_argument("--on", choices=("local", "slurm"), default="local",
                      help="local: DVC's queue on this machine; slurm: one Slurm array task per run, shared through "
                           "the git and DVC remotes (docs/pipeline.md, Scaling out)")
    runs.add_argument("--git-remote", default="origin", help="with --on slurm: the git remote the tasks clone from "
                                                               "and push their experiments to (default: origin)")
    runs.add_argument("--partition", help="with --on slurm: the Slurm partition")
    runs.add_argument("--time", help="with --on slurm: each task's time limit, as sbatch --time takes it")
    runs.add_argument("--gpus", help="with --on slurm: GPUs per task, as sbatch --gpus takes it")
    one = commands.add_parser("task", help="one run of a sweep, then dvc exp push (a Slurm task, a CI matrix job)")
    one.add_argument("--index", type=int, required=True, help="which run of the sweep's plan, from 0")
    one.add_argument("--git-remote", default="origin", help="where to push the experiment (a remote name or URL)")
    one.add_argument("--folds", type=int, default=5)
    one.add_argument("--only-folds", type=int, nargs="+", default=None)
    one.add_argument("--seeds", type=int, nargs="+", default=[0])
    one.add_argument("--train-seeds", type=int, nargs="+", default=None)
    one.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE")
    again = commands.add_parser("report", help="recompute a record from its kept predictions")
    again.add_argument("record")
    merged = commands.add_parser("merge", help="pool records of one configuration made on different folds")
    merged.add_argument("records", nargs="+", metavar="RECORD")
    merged.add_argument("--record", help="the name of the merged record")
    compared = commands.add_parser("against", help="compare a record with a baseline record, per model (McNemar)")
    compared.add_argument("record")
    compared.add_argument("baseline")
    shown = commands.add_parser("readme", help="print a record's tables as the README's Results show them")
    shown.add_argument("record")
    args = parser.parse_args(argv)
    for name in ("record", "baseline"):
        if getattr(args, name, None) is not None:
            check_record_name(getattr(args, name), "--record" if name == "record" and args.command in ("run", "merge")
                              else name.upper())
    for name in getattr(args, "records", None) or []:
        check_record_name(name, "RECORD")
    if args.command == "run":
        check_run_arguments(args)
    return args


def check_run_arguments(args):
    if args.on != "slurm" and any(getattr(args, option) for option in ("partition", "time", "gpus")):
        raise UserError("--partition, --time and --gpus are Slurm's: give them with --on slurm")
    if args.queued_on and not args.collect_only:
        raise UserError("--queued-on goes with --collect-only: a sweep queues its runs on the current commit")
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if args.folds == 1 or args.folds < 0:
        raise UserError(f"--folds must be 0 (random splits) or at least 2, got {args.folds}")
    if args.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {args.repeats}")
    args.seeds = args.seeds if args.seeds is not None else list(range(args.repeats))
    if args.only_folds and not all(0 <= fold < args.folds for fold in args.only_folds):
        raise UserError(f"--only-folds must name folds from 0 to --folds - 1 = {args.folds - 1}, got "
                        f"{' '.join(map(str, args.only_folds))}" if args.folds else
                        "--only-folds needs K-fold cross-validation (--folds 2 or more), not random splits")
    for option, values, what in (("--seeds", args.seeds, "seed"), ("--train-seeds", args.train_seeds or [], "seed"),
                                 ("--only-folds", args.only_folds or [], "fold")):
        if len(set(values)) != len(values):
            raise UserError(f"{option} repeats a {what} ({' '.join(map(str, values))}); give each {what} once")
    for key, value in plan.parse_settings(args.set_param).items():
        if key in plan.RESERVED and (key != "train.seed" or args.train_seeds):
            raise UserError(f"give {key} with {plan.RESERVED[key]}, not with -S {key}={value}")
    args.record = args.record or plan.record_name(args.folds, args.seeds, args.train_seeds, args.set_param,
                                                  args.only_folds)


COMMANDS = {"run": run, "task": task, "report": recompute, "merge": merge, "against": against, "readme": readme}


@stage_main
def main():
    args = parse_args()
    COMMANDS[args.command](args)


if __name__ == "__main__":
    main()
