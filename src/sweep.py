"""Run the pipeline over several split seeds as DVC experiments; report each model's mean and spread.

Usage: python src/sweep.py --seeds 0 1 2 3 4
Each seed is one `dvc exp run -S data.seed=N --name split-N` (visible afterwards in
`dvc exp show`); the test metrics of every run are collected into metrics/sweep.json and
metrics/sweep.md. params.yaml and the workspace outputs are put back as they were at the end.
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


def run_experiment(seed, extra_sets):
    name = f"split-{seed}"
    subprocess.run(["dvc", "exp", "remove", name], capture_output=True)  # a re-run replaces its namesake
    args = ["dvc", "exp", "run", "-S", f"data.seed={seed}", "--name", name]
    for assignment in extra_sets:
        args += ["-S", assignment]
    print(f"== split seed {seed}: {' '.join(args)}", flush=True)
    if subprocess.run(args).returncode != 0:
        raise UserError(f"the experiment for split seed {seed} failed (see above); fix it and re-run the sweep")


def collect(models):
    return {name: {score: json.loads(Path(f"metrics/evaluate/{name}.json").read_text())[score] for score in SCORES}
            for name in models}


def summarise(runs, models):
    """Per model: each seed's scores, their mean and sample standard deviation."""
    summary = {}
    for name in models:
        per_seed = {seed: runs[seed][name] for seed in runs}
        stats = {}
        for score in SCORES:
            values = [scores[score] for scores in per_seed.values()]
            stats[score] = {"mean": statistics.fmean(values),
                            "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        summary[name] = {"per_seed": per_seed, **stats}
    return summary


def markdown(summary):
    seeds = list(next(iter(summary.values()))["per_seed"])
    lines = ["| model | " + " | ".join(f"seed {s} acc / sens" for s in seeds) + " | mean accuracy | mean sensitivity "
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
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="extra parameter for every run, as in dvc exp run -S")
    args = parser.parse_args()
    saved = {path: path.read_text() if path.exists() else None for path in (Path("params.yaml"), Path("dvc.lock"))}
    models = list(yaml.safe_load(saved[Path("params.yaml")])["models"])
    runs = {}
    try:
        for seed in args.seeds:
            run_experiment(seed, args.set_param)
            runs[seed] = collect(models)
    finally:  # experiments are kept by DVC; the workspace goes back to how it was
        for path, text in saved.items():
            path.write_text(text) if text is not None else path.unlink(missing_ok=True)
        subprocess.run(["dvc", "checkout", "--quiet"], check=False)
    summary = summarise(runs, models)
    write_json("metrics/sweep.json", {"seeds": args.seeds, "extra_params": args.set_param, "models": summary})
    table = markdown(summary)
    write_text("metrics/sweep.md", table)
    print(table)


if __name__ == "__main__":
    sys.exit(main())
