"""A sweep's runs as a Slurm job array. Each task clones the sweep's commit from the git remote into a folder of its
own (no DVC lock is shared), runs its one experiment (`sweep.py task`) and `dvc exp push`es it: the git refs to the
git remote, the outputs to the DVC remote. The sweep follows the tasks, resubmits a run that ends without a pushed
experiment once, and `dvc exp pull`s the runs; a local sweep's collection does the rest.

Nothing of one cluster is written here: sbatch options and the lines that prepare a task's shell (modules, a venv)
come from `slurm.yaml` in the workspace, or the file BLOODCELLS_SLURM_CONFIG names (docs/slurm.example.yaml).
"""
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import yaml
from tqdm import tqdm

from bloodcells.core.atomic import write_text
from bloodcells.core.errors import UserError
from bloodcells.training import resume

CONFIG_VARIABLE = "BLOODCELLS_SLURM_CONFIG"
CONFIG_FILE = Path("slurm.yaml")
CONFIG_KEYS = {"sbatch": "extra sbatch options, e.g. [--account=lab, --qos=normal]",
               "setup": "shell lines run before each task, e.g. module load python; source ~/venv/bin/activate",
               "workdir": "the folder where each task clones the repository (default: $TMPDIR or /tmp)"}
JOBS_DIR = Path(".dvc/tmp/slurm")
WAITING = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED")


def git(*args, check=True):
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def read_config():
    """The cluster's settings: {sbatch: [...], setup: '...', workdir: '...'} (each may be absent)."""
    path = Path(os.environ.get(CONFIG_VARIABLE) or CONFIG_FILE)
    if not path.is_file():
        if os.environ.get(CONFIG_VARIABLE):
            raise UserError(f"{CONFIG_VARIABLE}={path}: no such file; point it at your cluster's settings "
                            "(docs/slurm.example.yaml shows them)")
        return {}
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({error}); fix it (docs/slurm.example.yaml)") from None
    unknown = sorted(set(config) - set(CONFIG_KEYS)) if isinstance(config, dict) else ["(not a mapping)"]
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}; known: "
                        + "; ".join(f"{key}: {what}" for key, what in CONFIG_KEYS.items()))
    if not isinstance(config.get("sbatch", []), list):
        raise UserError(f"{path}: sbatch must be a list of options, e.g. [--account=lab]")
    return config


def check_ready(git_remote):
    """Everything a sweep on Slurm needs, before it submits anything; returns (the git remote's URL, the commit)."""
    if shutil.which("sbatch") is None:
        raise UserError("--on slurm: sbatch not found; run the sweep on a Slurm login node, or without --on slurm "
                        "(DVC's local queue)")
    url = git("remote", "get-url", git_remote, check=False)
    if url.returncode != 0:
        raise UserError(f"--on slurm: no git remote {git_remote!r}; the tasks clone the sweep's commit from it and "
                        f"push their experiments to it: git remote add {git_remote} URL (or --git-remote NAME)")
    default = subprocess.run(["dvc", "remote", "default"], capture_output=True, text=True)
    if default.returncode != 0 or not default.stdout.strip():
        raise UserError("--on slurm: no default DVC remote; the tasks push their outputs to it: "
                        "dvc remote add -d NAME URL (a folder all the nodes see, or S3)")
    if git("status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise UserError("--on slurm: uncommitted changes; a task clones the sweep's commit and cannot see them: "
                        "commit them and git push, then run the sweep again")
    commit = git("rev-parse", "HEAD").stdout.strip()
    git("fetch", "-q", git_remote)
    holders = git("branch", "-r", "--contains", commit, check=False).stdout.split()
    if not any(branch.startswith(f"{git_remote}/") for branch in holders):
        raise UserError(f"--on slurm: commit {commit[:7]} is not on git remote {git_remote!r}, where the tasks "
                        f"clone it: git push {git_remote} HEAD")
    return url.stdout.strip(), commit


def job_script(record, indices, task_args, url, commit, options, config):
    """The sbatch script of the tasks `indices` (index i runs the sweep's run i)."""
    workspace = Path.cwd().resolve()
    logs = (JOBS_DIR / record).resolve()
    lines = ["#!/bin/bash", f"#SBATCH --job-name=bloodcells-{record}", f"#SBATCH --array={','.join(map(str, indices))}",
             f"#SBATCH --output={logs}/%a-%A.log", "#SBATCH --requeue",  # a preempted task comes back
             *[f"#SBATCH {option}" for option in [*options, *config.get("sbatch", [])]],
             config.get("setup", "").strip(),  # before `set -u`: module and activate scripts read unset variables
             "set -euo pipefail",
             f'work=$(mktemp -d "{config.get("workdir") or "${TMPDIR:-/tmp}"}/bloodcells.XXXXXX")',
             'trap \'rm -rf "$work"\' EXIT',
             f"git clone -q {shlex.quote(url)} \"$work/repo\"", 'cd "$work/repo"', f"git checkout -q {commit}",
             f"if [ -f {shlex.quote(str(workspace / '.dvc/config.local'))} ]; then "
             f"cp {shlex.quote(str(workspace / '.dvc/config.local'))} .dvc/config.local; fi",
             f"export {resume.ROOT_VARIABLE}={shlex.quote(str((workspace / resume.DEFAULT_ROOT).resolve()))}",
             'export PYTHONPATH="$work/repo/src${PYTHONPATH:+:$PYTHONPATH}"',  # the commit's library, not the workspace's
             f"python src/sweep.py task --index \"$SLURM_ARRAY_TASK_ID\" --git-remote {shlex.quote(url)} "
             + " ".join(map(shlex.quote, task_args))]
    return "\n".join(line for line in lines if line) + "\n"


def submit(script, record):
    """sbatch the script; returns the job id."""
    path = JOBS_DIR / record / f"job-{time.strftime('%Y%m%d-%H%M%S')}-{time.perf_counter_ns() % 10**6}.sh"
    (JOBS_DIR / record).mkdir(parents=True, exist_ok=True)
    write_text(path, script)
    submitted = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    if submitted.returncode != 0:
        raise UserError(f"sbatch refused the sweep's job: {submitted.stderr.strip()} (its script: {path})")
    return submitted.stdout.strip().split(";")[0]


def task_states(job_ids):
    """{(job id, task index): Slurm state} of the tasks still in Slurm's queue."""
    shown = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%F %K %T"], capture_output=True,
                           text=True)
    states = {}
    for line in shown.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            states[(parts[0], int(parts[1]))] = parts[2]
    return states


def pushed(url, commit, names):
    """The names among `names` whose experiment (on `commit`) is on the git remote."""
    prefix = f"refs/exps/{commit[:2]}/{commit[2:]}/"
    refs = git("ls-remote", url, check=False).stdout.split()[1::2]
    return {ref[len(prefix):] for ref in refs if ref.startswith(prefix)} & set(names)


def log_tail(record, index, lines=20):
    logs = sorted((JOBS_DIR / record).glob(f"{index}-*.log"), key=lambda path: path.stat().st_mtime)
    if not logs:
        return "(no log)"
    return "\n".join(logs[-1].read_text(errors="replace").rstrip().splitlines()[-lines:])


def run_sweep(record, names, task_args, url, commit, options, poll_seconds=5):
    """Submit one array task per run, follow them with a progress line, resubmit a run that ends without a pushed
    experiment once; returns (the runs that succeeded, the runs that failed twice)."""
    config = read_config()
    indices = list(range(len(names)))
    subprocess.run(["dvc", "exp", "remove", "--git-remote", url, *names], capture_output=True)  # an older sweep's
    first = submit(job_script(record, indices, task_args, url, commit, options, config), record)
    jobs = dict.fromkeys(indices, first)
    tries = dict.fromkeys(indices, 1)
    done, failed = set(), set()
    shown = None
    try:
        with tqdm(total=len(names), unit="run", desc="slurm") as bar:
            while len(done) + len(failed) < len(names):
                time.sleep(poll_seconds)
                states = task_states(sorted(set(jobs.values())))
                finished = pushed(url, commit, names)
                counts = {"queued": 0, "running": 0}
                for index in indices:
                    if index in done or index in failed:
                        continue
                    state = states.get((jobs[index], index))
                    if names[index] in finished and state is None:
                        done.add(index)
                        bar.update(1)
                        tqdm.write(f"{names[index]}: done")
                    elif state is None:  # left the queue without a pushed experiment: failed, cancelled, preempted
                        tqdm.write(f"{names[index]}: ended without a result (try {tries[index]}); the end of its log "
                                   f"({JOBS_DIR / record}):\n{log_tail(record, index)}")
                        if tries[index] < 2:
                            tries[index] += 1
                            jobs[index] = submit(job_script(record, [index], task_args, url, commit, options, config),
                                                 record)
                            tqdm.write(f"{names[index]}: submitted again (job {jobs[index]})")
                        else:
                            failed.add(index)
                            bar.update(1)
                    else:
                        counts["queued" if state in WAITING else "running"] += 1
                line = (f"{counts['queued']} queued, {counts['running']} running, {len(done)} done, "
                        f"{len(failed)} failed")
                if line != shown:
                    bar.set_postfix_str(line)
                    shown = line
    except KeyboardInterrupt:
        subprocess.run(["scancel", *sorted(set(jobs.values()))], capture_output=True)
        raise
    return [names[i] for i in sorted(done)], [names[i] for i in sorted(failed)]


def pull(url, names):
    """Bring the experiments `names` from the remotes (git refs, and their outputs from the DVC remote)."""
    pulled = subprocess.run(["dvc", "exp", "pull", url, *names], capture_output=True, text=True)
    if pulled.returncode != 0:
        raise UserError(f"dvc exp pull {url} failed: {pulled.stderr.strip()}")
