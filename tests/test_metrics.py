import pytest

from compare import best_model
from bloodcells.metrics import classification_metrics, wilson_interval


def pairs_from_confusion(matrix):
    """(actual, predicted) lists that realise a confusion matrix (rows actual, columns predicted)."""
    actual, predicted = [], []
    for a, row in enumerate(matrix):
        for p, count in enumerate(row):
            actual += [a] * count
            predicted += [p] * count
    return actual, predicted


def test_metrics_match_a_hand_worked_confusion_matrix():
    matrix = [[18, 3, 0, 0],   # NEUTROPHIL
              [2, 7, 0, 0],    # EOSINOPHIL
              [0, 0, 3, 0],    # LYMPHOCYTE
              [1, 0, 0, 1]]    # MONOCYTE
    metrics = classification_metrics(*pairs_from_confusion(matrix))
    assert metrics["n_total"] == 35 and metrics["n_correct"] == 29
    assert metrics["accuracy"] == pytest.approx(29 / 35)
    neutrophil = metrics["per_class"]["NEUTROPHIL"]
    assert neutrophil["sensitivity"] == pytest.approx(18 / 21)
    assert neutrophil["specificity"] == pytest.approx(11 / 14)    # tn = 7+3+1, fp = 2+1
    assert neutrophil["precision"] == pytest.approx(18 / 21)
    assert neutrophil["support"] == 21
    eosinophil = metrics["per_class"]["EOSINOPHIL"]
    assert eosinophil["sensitivity"] == pytest.approx(7 / 9)
    assert eosinophil["specificity"] == pytest.approx(23 / 26)    # fp = 3
    assert eosinophil["precision"] == pytest.approx(7 / 10)
    assert metrics["per_class"]["MONOCYTE"]["sensitivity"] == pytest.approx(0.5)
    assert metrics["per_class"]["MONOCYTE"]["specificity"] == pytest.approx(1.0)
    assert metrics["macro_sensitivity"] == pytest.approx((18 / 21 + 7 / 9 + 1 + 0.5) / 4)
    assert metrics["macro_specificity"] == pytest.approx((11 / 14 + 23 / 26 + 1 + 1) / 4)
    assert metrics["confusion_matrix"] == matrix
    low, high = metrics["accuracy_ci95"]
    assert low < 29 / 35 < high


def test_perfect_and_all_wrong():
    perfect = classification_metrics([0, 1, 2, 3], [0, 1, 2, 3])
    assert perfect["accuracy"] == 1 and perfect["macro_sensitivity"] == 1 and perfect["macro_specificity"] == 1
    wrong = classification_metrics([0, 0, 1, 1], [1, 1, 0, 0])
    assert wrong["accuracy"] == 0 and wrong["per_class"]["NEUTROPHIL"]["precision"] == 0
    # classes absent from the test split do not drag the macro averages down
    assert wrong["macro_sensitivity"] == 0 and wrong["per_class"]["MONOCYTE"]["support"] == 0


def test_wilson_interval_of_32_of_35():
    low, high = wilson_interval(32, 35)
    assert low == pytest.approx(0.7767, abs=1e-3) and high == pytest.approx(0.9704, abs=1e-3)
    assert wilson_interval(35, 35)[1] == 1.0


def test_best_model_breaks_ties_by_sensitivity_then_size():
    rows = {"a": {"accuracy": 0.9, "avg_sensitivity": 0.8, "parameters": 10},
            "b": {"accuracy": 0.9, "avg_sensitivity": 0.85, "parameters": 20},
            "c": {"accuracy": 0.9, "avg_sensitivity": 0.85, "parameters": 5}}
    assert best_model(rows) == "c"
    rows["a"]["accuracy"] = 0.95
    assert best_model(rows) == "a"
