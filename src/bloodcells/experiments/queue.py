"""Run DVC experiments through DVC's own queue (`dvc exp run --queue`, `dvc queue start -j N`) and read their results.

Queued experiments run in temporary copies of the repository and end as git refs (refs/exps/...), so a
result file that DVC keeps in git (cache: false) is read from the experiment's commit, not the workspace.
"""
import os
import subprocess
import tempfile
import time

from tqdm import tqdm

from bloodcells.core.errors import UserError
from bloodcells.training import resume

DONE = ("Success", "Failed")


def dvc(*args, check=True):
    result = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise UserError(f"dvc {' '.join(args[:3])} failed: {message[-1] if message else 'no message'}")
    return result


def queue(args, name):
    """Queue one experiment (the arguments of `dvc exp run` after `run`), replacing an older one of that name."""
    dvc("queue", "remove", name, check=False)
    dvc("exp", "remove", name, check=False)
    dvc("exp", "run", "--queue", *args, "--name", name)


def start_workers(jobs):
    """Start `jobs` DVC queue workers. Each queued run works in a temporary copy of the repository, gone when it
    fails, so their training states go to the workspace's resume folder: a run queued again resumes."""
    states = os.environ.get(resume.ROOT_VARIABLE) or str(resume.DEFAULT_ROOT.resolve())
    env = {**os.environ, resume.ROOT_VARIABLE: states}
    # the workers outlive this call and inherit its output streams: a pipe would block until they exit
    with tempfile.TemporaryFile("w+") as errors:
        started = subprocess.run(["dvc", "queue", "start", "--jobs", str(jobs)], stdout=subprocess.DEVNULL,
                                 stderr=errors, env=env)
        if started.returncode != 0:
            errors.seek(0)
            raise UserError(f"dvc queue start failed: {errors.read().strip()}")


def queue_status():
    return parse_queue_status(dvc("queue", "status").stdout)


def parse_queue_status(text):
    """({experiment name: Queued | Running | Success | Failed}, number of live workers) from `dvc queue status`."""
    status, workers = {}, 0
    for line in text.splitlines()[1:]:
        fields = line.split()
        if line.startswith("Worker status:"):
            workers = int(fields[2]) + int(fields[4])  # "Worker status: A active, I idle"
        elif len(fields) >= 4:
            status[fields[1]] = fields[-1]
    return status, workers


def log_tail(name, lines=30):
    text = dvc("queue", "logs", name, check=False).stdout
    return "\n".join(text.rstrip().splitlines()[-lines:])


def wait(names, started, poll_seconds=5, no_worker_grace=600, restart_after=120, missing_grace=60):
    """Follow the queued experiments until each has succeeded or failed: a progress bar, one line per finished run,
    the end of a failed run's log (`started`: time.perf_counter() at the sweep's start). Returns {name: status}.
    A worker that stopped with runs still queued (treeverse/dvc#10562) is replaced after `restart_after` seconds,
    once per run at most. A run missing from DVC's table for `missing_grace` seconds left the queue without a
    result: failed. Ctrl-C stops the sweep's runs (dvc queue kill/remove)."""
    seen, running_since, missing_since = {}, {}, {}
    last_worker_seen, restarts = started, 0
    try:
        with tqdm(total=len(names), unit="run", desc="experiments") as bar:
            while True:
                status, workers = queue_status()
                now = time.perf_counter()
                for name in names:
                    if name in status:
                        missing_since.pop(name, None)
                        state = status[name]
                    else:  # a task moving from queued to running can drop out of one table (seen with DVC 3.x)
                        gone = now - missing_since.setdefault(name, now) >= missing_grace
                        state = "Failed" if gone else seen.get(name, "Queued")
                    if state == seen.get(name):
                        continue
                    seen[name] = state
                    if state == "Running":
                        running_since[name] = now
                    elif state in DONE:
                        bar.update(1)
                        took = (now - running_since.get(name, started)) / 60
                        tqdm.write(f"{name}: {state.lower()} after {took:.1f} min "
                                   f"({(now - started) / 60:.1f} min since the sweep started)")
                        if state == "Failed":
                            tqdm.write(f"---- end of the log of {name} (dvc queue logs {name}) ----\n"
                                       f"{log_tail(name)}\n----")
                pending = [name for name in names if seen[name] not in DONE]
                if not pending:
                    return seen
                # a busy worker may not answer DVC's status call: only queued runs with none running count
                running = any(seen[name] == "Running" for name in pending)
                last_worker_seen = now if workers or running else last_worker_seen
                if now - last_worker_seen > restart_after and restarts < len(names):
                    tqdm.write(f"no DVC queue worker is left for {len(pending)} queued runs (DVC's worker can stop "
                               "early, treeverse/dvc#10562): starting one")
                    start_workers(1)
                    restarts, last_worker_seen = restarts + 1, now
                elif now - last_worker_seen > no_worker_grace:
                    raise UserError(f"{len(pending)} experiments wait in the queue but no DVC queue worker has run "
                                    f"for {no_worker_grace // 60:.0f} min; start one with `dvc queue start`, then "
                                    "collect the results with the same sweep command and --collect-only")
                time.sleep(poll_seconds)
    except KeyboardInterrupt:
        pending = [name for name in names if seen.get(name) not in DONE]
        dvc("queue", "kill", *[n for n in pending if seen.get(n) == "Running"], check=False)
        dvc("queue", "remove", *pending, check=False)
        raise UserError(f"interrupted: stopped and removed {len(pending)} unfinished experiments; "
                        "finished ones are kept (dvc exp show)") from None


def commit_of(revision="HEAD"):
    """The full hash of a commit named any way git accepts (HEAD, a short hash, a tag)."""
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], capture_output=True,
                           text=True)
    if found.returncode != 0:
        raise UserError(f"{revision} is not a commit of this repository; name one as `git log` shows it")
    return found.stdout.strip()


def experiment_ref(name, baseline=None):
    """The git ref of experiment `name` queued on commit `baseline` (default: the current commit), so a sweep finds
    its runs even if a commit was made while they ran."""
    head = baseline or commit_of()
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", ref], capture_output=True, text=True)
    if found.returncode != 0:
        raise UserError(f"experiment {name} has no result on commit {head[:7]}; re-run the sweep, or if it ran on an "
                        "earlier commit, collect it with --collect-only --queued-on <that commit>")
    return ref


def read_file(name, path, baseline=None):
    """The text of `path` as experiment `name` (queued on commit `baseline`, default the current one) committed it."""
    shown = subprocess.run(["git", "show", f"{experiment_ref(name, baseline)}:{path}"], capture_output=True,
                           text=True)
    if shown.returncode != 0:
        raise UserError(f"experiment {name} has no {path}: {shown.stderr.strip()}")
    return shown.stdout
