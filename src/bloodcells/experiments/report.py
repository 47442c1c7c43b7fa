"""A sweep record's report from its kept test predictions (one row per model, run and test image): per model the
scores pooled over every prediction with bootstrap intervals over images and the per-fold spread; McNemar's test for
every pair of models on the same images; the images every model always missed. The Markdown and the README's tables
are drawn from it."""
import statistics

from bloodcells.core.errors import UserError
from bloodcells.evaluation.metrics import classification_metrics
from bloodcells.evaluation.stats import bootstrap_intervals, describe_pair, paired_comparisons

SCORES = ("accuracy", "macro_sensitivity", "macro_specificity")
EXTRA_SCORES = ("balanced_accuracy", "cohen_kappa", "macro_roc_auc", "expected_calibration_error")


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


def display_name(model, archs):
    """ResNet18, EfficientNet-b0, AlexNet: the model's arch ({model: arch}, from params.yaml), as the README names
    it."""
    arch = archs.get(model, model)
    return {"resnet18": "ResNet18", "resnet34": "ResNet34", "resnet50": "ResNet50",
            "alexnet": "AlexNet"}.get(arch, arch.replace("efficientnet", "EfficientNet"))


def readme_tables(summary, archs):
    """The README's Results tables of a record: the pooled scores, then the paired tests (what `sweep.py readme`
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
        lines.append(f"| {display_name(model, archs)} | " + " | ".join(cells) + " |")
    lines += ["", "| pair | accuracy difference | only the first right / only the second right | McNemar p | Holm p |",
              "|---|---|---|---|---|"]
    for pair in summary["pairs"]:
        low, high = (100 * bound for bound in pair["difference_ci95"])
        tests = pair["mcnemar"]
        counts = "; ".join(f"{t['only_a_right']} / {t['only_b_right']}" for t in tests)
        p_values = "; ".join(f"{t['p_value']:.2g}" for t in tests)
        holm = "; ".join(f"{t['p_holm']:.2g}" for t in tests)
        lines.append(f"| {display_name(pair['a'], archs)} vs {display_name(pair['b'], archs)} | "
                     f"{100 * pair['difference']:+.1f} points ({low:+.1f} to {high:+.1f}) | {counts} | {p_values} | {holm} |")
    return "\n".join(lines) + "\n"
