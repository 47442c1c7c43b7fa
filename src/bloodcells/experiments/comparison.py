"""One sweep record against another, family by family, on the same test images: did a change of recipe (a label
audit, starting weights) change what each model gets right? McNemar's exact test on the images only one of the two
got right, Holm-adjusted over the families, and a paired bootstrap interval of the accuracy difference."""
from bloodcells.core.errors import UserError
from bloodcells.evaluation.stats import holm, paired_comparisons

KEYS = ["data_seed", "fold", "train_seed", "image"]


def compare_records(changed, baseline, changed_name, baseline_name):
    """Per model of both records' kept predictions (rows: model, run and test image), the pair (changed vs
    baseline) as stats.paired_comparisons describes it, with the Holm adjustment taken over the models."""
    models = [name for name in dict.fromkeys(changed["model"]) if name in set(baseline["model"])]
    if not models:
        raise UserError(f"records {changed_name} and {baseline_name} share no model")
    pairs = []
    for model in models:
        ours, theirs = (frame[frame["model"] == model].set_index(KEYS).sort_index() for frame in (changed, baseline))
        if ours.index.isin(theirs.index).all():  # a record of some folds against one of all: those folds' runs
            theirs = theirs.loc[ours.index]
        if not ours.index.equals(theirs.index):
            raise UserError(f"{model}: records {changed_name} and {baseline_name} were not tested on the same images "
                            "(another fold count or data seed); compare records of the same folds")
        if not (ours["actual"] == theirs["actual"]).all():
            raise UserError(f"{model}: records {changed_name} and {baseline_name} give some images other labels")
        correct = {changed_name: (ours["actual"] == ours["predicted"]).to_numpy(),
                   baseline_name: (theirs["actual"] == theirs["predicted"]).to_numpy()}
        replicates = [f"seed {s}" + (f", train seed {t}" if t >= 0 else "") for s, _, t, _ in ours.index]
        pairs.append({"model": model, **paired_comparisons(correct, ours.index.get_level_values("image"),
                                                           replicates)[0]})
    for r in range(len(pairs[0]["mcnemar"])):
        for pair, p in zip(pairs, holm([pair["mcnemar"][r]["p_value"] for pair in pairs])):
            pair["mcnemar"][r]["p_holm"] = p
    return pairs


def markdown(pairs, changed_name, baseline_name):
    lines = [f"Record `{changed_name}` against `{baseline_name}`, each model on the same test images (McNemar's exact "
             "test on the images only one of the two got right, Holm-adjusted over the models; the difference's "
             "interval is a paired bootstrap over images).", "",
             f"| model | {changed_name} | {baseline_name} | difference | only {changed_name} right / only "
             f"{baseline_name} right | McNemar p | Holm p |", "|---|---|---|---|---|---|---|"]
    for pair in pairs:
        low, high = pair["difference_ci95"]
        for test in pair["mcnemar"]:
            lines.append(f"| {pair['model']} | {pair['accuracy_a']:.3f} | {pair['accuracy_b']:.3f} | "
                         f"{100 * pair['difference']:+.1f} points ({100 * low:+.1f} to {100 * high:+.1f}) | "
                         f"{test['only_a_right']} / {test['only_b_right']} | {test['p_value']:.2g} | "
                         f"{test['p_holm']:.2g} |")
    significant = [pair["model"] for pair in pairs if all(t["p_holm"] < 0.05 for t in pair["mcnemar"])]
    lines += ["", "Significant at 0.05 after Holm: " + (", ".join(significant) if significant else "none") + "."]
    return "\n".join(lines) + "\n"

