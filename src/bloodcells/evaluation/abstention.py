"""Answering only when sure: the risk-coverage curve of a model's top-class probability (Geifman & El-Yaniv 2017,
"Selective classification for deep neural networks"). An image is answered when its top probability is at least a
threshold and left to a person otherwise; each threshold gives a coverage (the share answered) and the accuracy on
what was answered."""
import numpy as np

REPORTED_COVERAGES = (0.95, 0.90)
REPORTED_ACCURACY = 0.99


def risk_coverage_curve(actual, probabilities):
    """Rows {threshold, coverage, accuracy, answered}, one per distinct top probability, most confident first: with
    `predict --min-confidence threshold`, `coverage` of the images are answered at `accuracy`. Images of equal
    confidence are answered together, as a threshold would."""
    actual, probabilities = np.asarray(actual), np.asarray(probabilities, dtype=float)
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == actual
    order = np.argsort(-confidence, kind="stable")
    confidence, right = confidence[order], right[order]
    correct = np.cumsum(right)
    last_of_each = np.r_[np.flatnonzero(np.diff(confidence) != 0), len(confidence) - 1] if len(confidence) else []
    return [{"threshold": round(float(confidence[i]), 6), "coverage": round((i + 1) / len(confidence), 6),
             "accuracy": round(float(correct[i] / (i + 1)), 6), "answered": int(i + 1)} for i in last_of_each]


def accuracy_at_coverage(curve, coverage):
    """The accuracy when the most confident `coverage` share (at most) is answered; None if no threshold gets there."""
    within = [row for row in curve if row["coverage"] <= coverage + 1e-9]
    return within[-1]["accuracy"] if within else None


def coverage_for_accuracy(curve, accuracy):
    """The row with the largest coverage whose accuracy is at least `accuracy` (None if even the most confident
    images miss it): 1 - its coverage is the share a person must look at."""
    reaching = [row for row in curve if row["accuracy"] >= accuracy - 1e-12]
    return reaching[-1] if reaching else None


def abstention_summary(actual, probabilities):
    """The evaluate stage's figures: accuracy at 95 % and 90 % coverage, and what 0.99 accuracy costs."""
    curve = risk_coverage_curve(actual, probabilities)
    summary = {f"accuracy_at_coverage_{c:.2f}": accuracy_at_coverage(curve, c) for c in REPORTED_COVERAGES}
    reached = coverage_for_accuracy(curve, REPORTED_ACCURACY)
    summary[f"coverage_at_accuracy_{REPORTED_ACCURACY}"] = reached["coverage"] if reached else 0.0
    summary[f"threshold_for_accuracy_{REPORTED_ACCURACY}"] = reached["threshold"] if reached else None
    return summary, curve
