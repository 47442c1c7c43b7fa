"""Classification metrics from scikit-learn, in the shape the evaluate stage writes."""
import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, confusion_matrix, multilabel_confusion_matrix, \
    precision_recall_fscore_support

from .classes import CLASSES


def wilson_interval(successes, total, confidence=0.95):
    interval = binomtest(int(successes), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return [round(float(interval.low), 4), round(float(interval.high), 4)]


def classification_metrics(actual, predicted):
    """Accuracy with its 95 % Wilson interval, macro and per-class sensitivity/specificity/precision."""
    labels = list(range(len(CLASSES)))
    actual, predicted = np.asarray(actual), np.asarray(predicted)
    precision, recall, f1, support = precision_recall_fscore_support(
        actual, predicted, labels=labels, zero_division=0)
    # Per class [[tn, fp], [fn, tp]]: specificity = tn / (tn + fp).
    per_class_cm = multilabel_confusion_matrix(actual, predicted, labels=labels)
    negatives = per_class_cm[:, 0, 0] + per_class_cm[:, 0, 1]
    specificity = np.divide(per_class_cm[:, 0, 0], negatives, out=np.zeros(len(labels)), where=negatives > 0)
    present = support > 0  # a class absent from the test split has no sensitivity to average
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
        "per_class": {
            name: {
                "sensitivity": float(recall[i]),
                "specificity": float(specificity[i]),
                "precision": float(precision[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(CLASSES)
        },
        "confusion_matrix": confusion_matrix(actual, predicted, labels=labels).tolist(),
    }
