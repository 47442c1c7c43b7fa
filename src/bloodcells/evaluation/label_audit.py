"""Suspected label errors from out-of-fold probabilities (confident learning, cleanlab): the sweep gives every image
class probabilities from models that never saw it, which is what cleanlab's estimates need."""
import numpy as np
import pandas as pd
from cleanlab.count import compute_confident_joint, estimate_latent
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from bloodcells.core.errors import UserError

MIN_PER_CLASS = 5  # fewer out-of-fold predictions than this give cleanlab's per-class thresholds no meaning


def pooled(predictions, classes):
    """One row per image from the sweep's predictions (columns model, image, actual, predicted, p_<class>): its given
    label, the class probabilities averaged over every model and run, and each model's most frequent answer."""
    columns = [f"p_{name}" for name in classes]
    missing = [c for c in ["model", "image", "actual", "predicted", *columns] if c not in predictions.columns]
    if missing:
        raise UserError(f"the sweep's predictions lack the column(s) {', '.join(missing)}; they are from an older "
                        "sweep or other classes: rerun python src/sweep.py")
    unknown = sorted(set(predictions["actual"]) - set(classes))
    if unknown:
        raise UserError(f"the sweep's predictions have label(s) {', '.join(unknown)} that are not classes "
                        f"({', '.join(classes)}); rerun python src/sweep.py")
    images = predictions.groupby("image", sort=True)
    probabilities = images[columns].mean()
    probabilities = probabilities.div(probabilities.sum(axis=1), axis=0)  # the stored probabilities are rounded
    given = images["actual"].agg(lambda labels: labels.iloc[0])
    answers = predictions.groupby(["image", "model"])["predicted"].agg(lambda called: called.mode().iloc[0])
    return pd.DataFrame({"given": given}).join(probabilities), answers.unstack("model")


def suspects(labels, probabilities, classes):
    """Indices of the suspected label errors, most suspect first, with cleanlab's label quality score of each image
    (0-1; low is suspect). `labels` are class indices, `probabilities` N x len(classes) out-of-fold."""
    counts = np.bincount(labels, minlength=len(classes))
    few = [f"{name} ({count})" for name, count in zip(classes, counts) if count < MIN_PER_CLASS]
    if few:
        raise UserError(f"class(es) with fewer than {MIN_PER_CLASS} out-of-fold predictions: {', '.join(few)}; "
                        "confident learning cannot estimate their label noise: leave them out of the data "
                        "(clean.min_images) or audit a larger dataset")
    # n_jobs=1: cleanlab's worker processes would inherit the stages' SIGTERM handler, and the work is small
    ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
    return ranked, get_label_quality_scores(labels, probabilities)


def noise_per_class(labels, probabilities, classes):
    """cleanlab's estimate, per given class, of the share of its labels that are wrong: 1 - P(true = c | given = c)."""
    joint = compute_confident_joint(labels, probabilities)
    _, _, inverse_noise = estimate_latent(joint, labels)  # inverse_noise[true, given] = P(true | given)
    return {name: round(float(1 - inverse_noise[i, i]), 4) for i, name in enumerate(classes)}


def audit(predictions, classes):
    """(ranked suspects table, per-class noise estimate, images audited, images every model missed) from the
    sweep's predictions."""
    images, answers = pooled(predictions, classes)
    position = {name: i for i, name in enumerate(classes)}
    labels = images["given"].map(position).to_numpy()
    probabilities = images[[f"p_{name}" for name in classes]].to_numpy()
    ranked, quality = suspects(labels, probabilities, classes)
    rows = []
    for rank, i in enumerate(ranked, start=1):
        suggested = classes[int(probabilities[i].argmax())]
        name = images.index[i]
        models = answers.loc[name]
        rows.append({"rank": rank, "image": name, "given": images["given"].iloc[i], "suggested": suggested,
                     "label_quality": round(float(quality[i]), 4),
                     "p_given": round(float(probabilities[i, labels[i]]), 4),
                     "p_suggested": round(float(probabilities[i].max()), 4),
                     "models_agreeing": ",".join(m for m in models.index if models[m] == suggested)})
    table = pd.DataFrame(rows, columns=["rank", "image", "given", "suggested", "label_quality", "p_given",
                                        "p_suggested", "models_agreeing"])
    missed = {name for name in images.index if (answers.loc[name] != images.at[name, "given"]).all()}
    return table, noise_per_class(labels, probabilities, classes), len(images), missed
