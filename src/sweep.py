"""Run the pipeline over several split seeds as DVC experiments; report each model's mean and spread.

Usage: python src/sweep.py --seeds 0 1 2 3 4 [--train-seeds 0 1]
Each seed is one `dvc exp run -S data.seed=N --name split-N` (visible afterwards in
`dvc exp show`); with --train-seeds, each split is trained once per training seed T
(`-S train.seed=T --name split-N-train-T`) and a split's scores are the mean over them, so the
table describes the recipe rather than one initialisation. The test metrics of every run are
collected into metrics/sweep.json and metrics/sweep.md. params.yaml and the workspace outputs are
put back as they were at the end.
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

from bloodcells.atomic import write_json, write_text
from bloodcells.errors import UserError, stage_main

SCORES = ("accuracy", "macro_sensitivity", "macro_specificity")


def experiment_args(seed, train_seed, extra_sets):
    """The `dvc exp run` command line of one split seed (and training seed, unless None)."""
    args = ["dvc", "exp", "run", "-S", f"data.seed={seed}"]
    name = f"split-{seed}"
    if train_seed is not None:
        args += ["-S", f"train.seed={train_seed}"]
        name += f"-train-{train_seed}"
    for assignment in extra_sets:
        args += ["-S", assignment]
    return args + ["--name", name]


def run_experiment(seed, train_seed, extra_sets):
    args = experiment_args(seed, train_seed, extra_sets)
    subprocess.run(["dvc", "exp", "remove", args[-1]], capture_output=True)  # a re-run replaces its namesake
    print(f"== {args[-1]}: {' '.join(args)}", flush=True)
    if subprocess.run(args).returncode != 0:
        raise UserError(f"the experiment {args[-1]} failed (see above); fix it and re-run the sweep")


def collect(models):
    return {name: {score: json.loads(Path(f"metrics/evaluate/{name}.json").read_text())[score] for score in SCORES}
            for name in models}


def summarise(runs, models):
    """Per model: each split seed's scores (the mean over training seeds), their mean and sample standard
    deviation over split seeds, and every single run. `runs` maps (split seed, training seed) to scores."""
    summary = {}
    splits = sorted({split for split, _ in runs})
    for name in models:
        per_seed = {split: {score: statistics.fmean(scores[name][score] for (s, _), scores in runs.items()
                                                    if s == split) for score in SCORES}
                    for split in splits}
        stats = {}
        for score in SCORES:
            values = [scores[score] for scores in per_seed.values()]
            stats[score] = {"mean": statistics.fmean(values),
                            "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        per_run = [{"split_seed": split, "train_seed": train_seed, **scores[name]}
                   for (split, train_seed), scores in runs.items()]
        summary[name] = {"per_seed": per_seed, **stats, "per_run": per_run}
    return summary


def markdown(summary, train_seeds=None):
    seeds = list(next(iter(summary.values()))["per_seed"])
    lines = []
    if train_seeds:
        lines += [f"Each split seed's cell is the mean over training seeds {', '.join(map(str, train_seeds))}.", ""]
    lines += ["| model | " + " | ".join(f"seed {s} acc / sens" for s in seeds) + " | mean accuracy | mean sensitivity "
             "| mean specificity |", "|---" * (len(seeds) + 4) + "|"]
    for name, row in summary.items():
        cells = [f"{row['per_seed'][s]['accuracy']:.3f} / {row['per_seed'][s]['macro_sensitivity']:.3f}" for s in seeds]
        means = [f"{row[score]['mean']:.3f} ± {row[score]['std']:.3f}" for score in SCORES]
        lines.append(f"| {name} | " + " | ".join(cells + means) + " |")
    return "\n".join(lines) + "\n"


@stage_main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--train-seeds", type=int, nargs="+", default=None,
                        help="train every split once per training seed and average (default: params.yaml's train.seed)")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="extra parameter for every run, as in dvc exp run -S")
    args = parser.parse_args()
    for option, values in (("--seeds", args.seeds), ("--train-seeds", args.train_seeds or [])):
        if len(set(values)) != len(values):
            raise UserError(f"{option} repeats a seed ({' '.join(map(str, values))}); give each seed once")
    if args.train_seeds and any(a.split("=")[0].strip() == "train.seed" for a in args.set_param):
        raise UserError("give the training seeds either as --train-seeds or as -S train.seed=N, not both")
    saved = {path: path.read_text() if path.exists() else None for path in (Path("params.yaml"), Path("dvc.lock"))}
    models = list(yaml.safe_load(saved[Path("params.yaml")])["models"])
    runs = {}
    try:
        for seed in args.seeds:
            for train_seed in args.train_seeds or [None]:
                run_experiment(seed, train_seed, args.set_param)
                runs[seed, train_seed] = collect(models)
    finally:  # experiments are kept by DVC; the workspace goes back to how it was
        for path, text in saved.items():
            path.write_text(text) if text is not None else path.unlink(missing_ok=True)
        subprocess.run(["dvc", "checkout", "--quiet"], check=False)
    summary = summarise(runs, models)
    write_json("metrics/sweep.json", {"seeds": args.seeds, "train_seeds": args.train_seeds,
                                      "extra_params": args.set_param, "models": summary})
    table = markdown(summary, args.train_seeds)
    write_text("metrics/sweep.md", table)
    print(table)


if __name__ == "__main__":
    sys.exit(main())
