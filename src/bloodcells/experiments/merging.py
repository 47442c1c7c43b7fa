"""Records of one configuration made on different folds, as one record: a sweep too long for one sitting runs
some folds at a time (`sweep.py run --only-folds`), and `sweep.py merge` pools their kept predictions."""
import pandas as pd

from bloodcells.core.errors import UserError

RUN = ["data_seed", "fold", "train_seed"]


def runs_of(frame):
    return set(frame[RUN].drop_duplicates().itertuples(index=False, name=None))


def describe_run(run):
    seed, fold, train_seed = run
    return f"data seed {seed}, fold {fold}" + (f", training seed {train_seed}" if train_seed >= 0 else "")


def merge_predictions(kept):
    """{record: its kept predictions} -> one frame. Every record must hold the same models with the same classes,
    and no run may be in two records (the same fold twice would count its images twice)."""
    (first, frame), *others = kept.items()
    models, classes = set(frame["model"]), [c for c in frame.columns if c.startswith("p_")]
    seen = {run: first for run in runs_of(frame)}
    for record, other in others:
        if set(other["model"]) != models:
            raise UserError(f"records {first} and {record} hold other models ({', '.join(sorted(models))} against "
                            f"{', '.join(sorted(set(other['model'])))}); merge records of one configuration only")
        if [c for c in other.columns if c.startswith("p_")] != classes:
            raise UserError(f"records {first} and {record} have other classes; merge records of one dataset only")
        for run in sorted(runs_of(other)):
            if run in seen:
                raise UserError(f"records {seen[run]} and {record} both hold the run of {describe_run(run)}; "
                                "merge records of different folds or seeds only")
            seen[run] = record
    return pd.concat(kept.values(), ignore_index=True).sort_values(RUN, kind="stable", ignore_index=True)
