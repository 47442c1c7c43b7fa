"""Paired significance tests and bootstrap intervals for models scored on the same test images."""
import itertools

import numpy as np
from scipy.stats import binomtest


BOOTSTRAP_RESAMPLES = 2000


def mcnemar_exact(correct_a, correct_b):
    """McNemar's exact test on paired right/wrong answers: only the images exactly one model got right count.
    Returns those two counts and the two-sided p-value of 'both models are equally accurate'."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    p_value = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p_value}


def holm(p_values):
    """Holm's step-down adjustment of a family of p-values (same order as given)."""
    p_values = np.asarray(p_values, float)
    order = np.argsort(p_values)
    adjusted = np.empty_like(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (len(p_values) - rank) * p_values[index])
        adjusted[index] = min(1.0, running)
    return adjusted.tolist()


def bootstrap_weights(groups, resamples=BOOTSTRAP_RESAMPLES, seed=0):
    """Weights [resamples, rows] of a bootstrap over groups (test images): each resample draws the images with
    replacement, and every row of a drawn image counts as often as it was drawn, so repeated predictions of one
    image (over repeats or training seeds) move together."""
    _, index = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = index.max() + 1
    counts = np.random.default_rng(seed).multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=resamples)
    return counts[:, index].astype(float)


def weighted_scores(weights, actual, predicted):
    """Accuracy, macro sensitivity and macro specificity for each row of `weights` (classes present only)."""
    weights = np.atleast_2d(weights)
    actual, predicted = np.asarray(actual), np.asarray(predicted)
    right = actual == predicted
    accuracy = weights @ right / weights.sum(axis=1)
    sensitivities, specificities = [], []
    for c in np.unique(actual):  # the classes present, in label order
        positive, called = actual == c, predicted == c
        sensitivities.append(weights @ (right & positive) / np.maximum(weights @ positive, 1e-12))
        negatives = weights @ ~positive
        specificities.append(np.where(negatives > 0, weights @ (~positive & ~called) / np.maximum(negatives, 1e-12), 1))
    return {"accuracy": accuracy, "macro_sensitivity": np.mean(sensitivities, axis=0),
            "macro_specificity": np.mean(specificities, axis=0)}


def interval(samples, confidence=0.95):
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def bootstrap_intervals(groups, actual, predicted, seed=0):
    """95 % percentile-bootstrap interval of each weighted score, resampling whole groups (images)."""
    samples = weighted_scores(bootstrap_weights(groups, seed=seed), actual, predicted)
    return {score: interval(values) for score, values in samples.items()}


def paired_comparisons(correct, groups, replicates, seed=0):
    """Every pair of models scored on the same rows. `correct` maps model -> bool array of right answers, `groups`
    names each row's test image and `replicates` labels each full pass over the images (one per repeat and
    training seed); McNemar's test runs per replicate (an image counts once in it), Holm-adjusted over the pairs,
    and the accuracy difference gets a paired bootstrap interval over images."""
    names = list(correct)
    replicates = np.asarray(replicates)
    labels = list(dict.fromkeys(replicates.tolist()))
    weights = bootstrap_weights(groups, seed=seed)
    pairs = []
    for a, b in itertools.combinations(names, 2):
        right_a, right_b = np.asarray(correct[a], bool), np.asarray(correct[b], bool)
        difference = weights @ (right_a.astype(float) - right_b) / weights.sum(axis=1)
        pairs.append({
            "a": a, "b": b,
            "accuracy_a": float(right_a.mean()), "accuracy_b": float(right_b.mean()),
            "difference": float(right_a.mean() - right_b.mean()),
            "difference_ci95": interval(difference),
            "mcnemar": [{"replicate": label, **mcnemar_exact(right_a[replicates == label], right_b[replicates == label])}
                        for label in labels],
        })
    for r in range(len(labels)):
        adjusted = holm([pair["mcnemar"][r]["p_value"] for pair in pairs])
        for pair, p in zip(pairs, adjusted):
            pair["mcnemar"][r]["p_holm"] = p
    return pairs


def describe_pair(pair):
    """'a vs b: +x.x points (95% CI ...); n images only a got right, m only b: McNemar p = ... (Holm ...), verdict',
    the line compare and the sweep print (one McNemar clause per replicate)."""
    a, b = pair["a"], pair["b"]
    low, high = pair["difference_ci95"]
    tests = "; ".join(f"{m['only_a_right']} images only {a} got right, {m['only_b_right']} only {b}: "
                      f"McNemar p = {m['p_value']:.3g} (Holm {m['p_holm']:.3g})" for m in pair["mcnemar"])
    verdict = "significant at 0.05" if all(m["p_holm"] < 0.05 for m in pair["mcnemar"]) else "not significant"
    return (f"{a} vs {b}: {100 * pair['difference']:+.1f} points (95% CI {100 * low:+.1f} to {100 * high:+.1f}); "
            f"{tests}; {verdict}")
