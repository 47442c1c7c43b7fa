"""Classification metrics from scikit-learn, in the shape the evaluate stage writes."""
import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, confusion_matrix, \
    multilabel_confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve


def wilson_interval(successes, total, confidence=0.95):
    interval = binomtest(int(successes), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return [round(float(interval.low), 4), round(float(interval.high), 4)]


def classification_metrics(actual, predicted, probabilities=None, *, classes):
    """Accuracy with its 95 % Wilson interval, macro and per-class sensitivity/specificity/precision, balanced
    accuracy and Cohen's kappa; with the predicted `probabilities` [N, classes] also one-vs-rest ROC AUC per class
    and macro, and the expected calibration error. Label i is classes[i]."""
    labels = list(range(len(classes)))
    actual, predicted = np.asarray(actual), np.asarray(predicted)
    precision, recall, f1, support = precision_recall_fscore_support(
        actual, predicted, labels=labels, zero_division=0)
    # Per class [[tn, fp], [fn, tp]]: specificity = tn / (tn + fp).
    per_class_cm = multilabel_confusion_matrix(actual, predicted, labels=labels)
    negatives = per_class_cm[:, 0, 0] + per_class_cm[:, 0, 1]
    specificity = np.divide(per_class_cm[:, 0, 0], negatives, out=np.zeros(len(labels)), where=negatives > 0)
    present = support > 0  # a class absent from the test split has no sensitivity to average
    confusion = confusion_matrix(actual, predicted, labels=labels)
    n_correct = int((actual == predicted).sum())
    return {
        "accuracy": float(accuracy_score(actual, predicted)),
        "n_correct": n_correct,
        "n_total": int(len(actual)),
        "accuracy_ci95": wilson_interval(n_correct, len(actual)),
        "macro_sensitivity": float(recall[present].mean()),
        "macro_specificity": float(specificity[present].mean()),
        "macro_precision": float(precision[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "balanced_accuracy": float(balanced_accuracy_score(actual, predicted)),
        "cohen_kappa": float(cohen_kappa_score(actual, predicted, labels=labels)),
        "per_class": {
            name: {
                "sensitivity": float(recall[i]),
                "specificity": float(specificity[i]),
                "precision": float(precision[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion.tolist(),
        "hardest_pairs": hardest_pairs(confusion, classes),
    } | (probability_metrics(actual, probabilities, classes) if probabilities is not None else {})


def hardest_pairs(matrix, classes, top=3):
    """The `top` pairs of classes most often taken for each other (both directions counted), most errors first:
    [{"pair": [a, b], "errors": n, "a_called_b": i, "b_called_a": j}, ...]; pairs without an error are left out."""
    matrix = np.asarray(matrix)
    pairs = [{"pair": [classes[i], classes[j]], "errors": int(matrix[i, j] + matrix[j, i]),
              "a_called_b": int(matrix[i, j]), "b_called_a": int(matrix[j, i])}
             for i in range(len(classes)) for j in range(i + 1, len(classes)) if matrix[i, j] + matrix[j, i]]
    return sorted(pairs, key=lambda p: -p["errors"])[:top]  # stable: ties keep the class order


def probability_metrics(actual, probabilities, classes):
    """One-vs-rest ROC AUC per class (None for a class absent from `actual`, or the only one present), their
    macro mean, and the expected calibration error of the top-class probability."""
    actual, probabilities = np.asarray(actual), np.asarray(probabilities, dtype=float)
    auc = {}
    for i, name in enumerate(classes):
        positive = actual == i
        auc[name] = float(roc_auc_score(positive, probabilities[:, i])) if 0 < positive.sum() < len(actual) else None
    known = [value for value in auc.values() if value is not None]
    return {
        "macro_roc_auc": float(np.mean(known)) if known else None,
        "roc_auc": auc,
        "expected_calibration_error": expected_calibration_error(actual, probabilities),
    }


def reliability_bins(actual, probabilities, bins=10):
    """Per equal-width bin of the top-class probability: images, their mean confidence and their accuracy."""
    actual, probabilities = np.asarray(actual), np.asarray(probabilities, dtype=float)
    confidence, right = probabilities.max(axis=1), probabilities.argmax(axis=1) == actual
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # [k/bins, (k+1)/bins), the last one closed
    rows = []
    for k in range(bins):
        chosen = which == k
        rows.append({"low": k / bins, "high": (k + 1) / bins, "count": int(chosen.sum()),
                     "confidence": float(confidence[chosen].mean()) if chosen.any() else None,
                     "accuracy": float(right[chosen].mean()) if chosen.any() else None})
    return rows


def expected_calibration_error(actual, probabilities, bins=10):
    """Sum over confidence bins of (share of images) x |accuracy - mean confidence|."""
    total = len(actual)
    return float(sum(row["count"] / total * abs(row["accuracy"] - row["confidence"])
                     for row in reliability_bins(actual, probabilities, bins) if row["count"]))


def micro_roc_curve(actual, probabilities):
    """The one-vs-rest ROC curve with every (image, class) pair pooled (micro-average): fpr, tpr, thresholds."""
    actual, probabilities = np.asarray(actual), np.asarray(probabilities, dtype=float)
    one_hot = np.eye(probabilities.shape[1], dtype=bool)[actual]
    return roc_curve(one_hot.ravel(), probabilities.ravel())
