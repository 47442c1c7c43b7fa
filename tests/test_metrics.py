import numpy as np
import pytest

from bloodcells.evaluation.model_choice import best_model
from bloodcells.data.cleaning import BCCD_CLASSES as CLASSES
from bloodcells.evaluation.metrics import classification_metrics, hardest_pairs, reliability_bins, wilson_interval
from bloodcells.evaluation.stats import describe_pair, holm, mcnemar_exact, paired_comparisons


def pairs_from_confusion(matrix):
    """(actual, predicted) lists that realise a confusion matrix (rows actual, columns predicted)."""
    actual, predicted = [], []
    for a, row in enumerate(matrix):
        for p, count in enumerate(row):
            actual += [a] * count
            predicted += [p] * count
    return actual, predicted


def test_hardest_pairs_count_both_directions_and_leave_out_pairs_without_errors():
    matrix = [[50, 1, 0, 4],   # NEUTROPHIL: 4 called MONOCYTE
              [3, 40, 0, 0],   # EOSINOPHIL: 3 called NEUTROPHIL
              [0, 0, 30, 2],   # LYMPHOCYTE
              [1, 0, 5, 20]]   # MONOCYTE: 5 called LYMPHOCYTE
    pairs = hardest_pairs(matrix, CLASSES)
    assert [p["pair"] for p in pairs] == [["LYMPHOCYTE", "MONOCYTE"], ["NEUTROPHIL", "MONOCYTE"],
                                         ["NEUTROPHIL", "EOSINOPHIL"]]
    assert pairs[0] == {"pair": ["LYMPHOCYTE", "MONOCYTE"], "errors": 7, "a_called_b": 2, "b_called_a": 5}
    assert [p["errors"] for p in pairs] == [7, 5, 4]
    assert hardest_pairs(matrix, CLASSES, top=10)[-1]["errors"] == 4  # the three pairs with no error are not listed
    assert len(hardest_pairs(matrix, CLASSES, top=10)) == 3
    assert hardest_pairs(np.diag([5, 5, 5, 5]), CLASSES) == []
    metrics = classification_metrics(*pairs_from_confusion(matrix), classes=CLASSES)
    assert metrics["hardest_pairs"] == pairs


def test_metrics_match_a_hand_worked_confusion_matrix():
    matrix = [[18, 3, 0, 0],   # NEUTROPHIL
              [2, 7, 0, 0],    # EOSINOPHIL
              [0, 0, 3, 0],    # LYMPHOCYTE
              [1, 0, 0, 1]]    # MONOCYTE
    metrics = classification_metrics(*pairs_from_confusion(matrix), classes=CLASSES)
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
    perfect = classification_metrics([0, 1, 2, 3], [0, 1, 2, 3], classes=CLASSES)
    assert perfect["accuracy"] == 1 and perfect["macro_sensitivity"] == 1 and perfect["macro_specificity"] == 1
    wrong = classification_metrics([0, 0, 1, 1], [1, 1, 0, 0], classes=CLASSES)
    assert wrong["accuracy"] == 0 and wrong["per_class"]["NEUTROPHIL"]["precision"] == 0
    # classes absent from the test split do not drag the macro averages down
    assert wrong["macro_sensitivity"] == 0 and wrong["per_class"]["MONOCYTE"]["support"] == 0


def test_wilson_interval_of_32_of_35():
    low, high = wilson_interval(32, 35)
    assert low == pytest.approx(0.7767, abs=1e-3) and high == pytest.approx(0.9704, abs=1e-3)
    assert wilson_interval(35, 35)[1] == 1.0


def test_best_model_breaks_ties_by_sensitivity_then_size():
    rows = {"a": {"accuracy": 0.9, "macro_sensitivity": 0.8, "parameters": 10},
            "b": {"accuracy": 0.9, "macro_sensitivity": 0.85, "parameters": 20},
            "c": {"accuracy": 0.9, "macro_sensitivity": 0.85, "parameters": 5}}
    assert best_model(rows) == "c"
    rows["a"]["accuracy"] = 0.95
    assert best_model(rows) == "a"


def test_kappa_balanced_accuracy_auc_and_calibration_by_hand():
    actual = [0, 0, 1, 1]
    probabilities = np.array([[0.8, 0.2, 0, 0],    # right, confidence 0.8
                              [0.45, 0.55, 0, 0],  # wrong, 0.55
                              [0.35, 0.65, 0, 0],  # right, 0.65
                              [0.2, 0.8, 0, 0]])   # right, 0.8
    metrics = classification_metrics(actual, probabilities.argmax(axis=1), probabilities, classes=CLASSES)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["balanced_accuracy"] == pytest.approx((0.5 + 1) / 2)
    # observed agreement 3/4, chance agreement 1/2 * 1/4 + 1/2 * 3/4 = 1/2
    assert metrics["cohen_kappa"] == pytest.approx((0.75 - 0.5) / (1 - 0.5))
    # NEUTROPHIL scores: positives 0.8, 0.45 against negatives 0.35, 0.2: all four pairs ordered right
    assert metrics["roc_auc"]["NEUTROPHIL"] == pytest.approx(1.0)
    assert metrics["roc_auc"]["LYMPHOCYTE"] is None and metrics["roc_auc"]["MONOCYTE"] is None
    assert metrics["macro_roc_auc"] == pytest.approx(1.0)
    # bins [0.5, 0.6): 1 wrong at 0.55; [0.6, 0.7): 1 right at 0.65; [0.8, 0.9): 2 right at 0.8
    expected = 0.25 * 0.55 + 0.25 * (1 - 0.65) + 0.5 * (1 - 0.8)
    assert metrics["expected_calibration_error"] == pytest.approx(expected)
    bins = reliability_bins(actual, probabilities)
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 1, 1, 0, 2, 0]


def test_auc_counts_ordered_pairs():
    actual = [0, 0, 1, 1]
    probabilities = np.array([[0.8, 0.2, 0, 0], [0.4, 0.6, 0, 0], [0.6, 0.4, 0, 0], [0.2, 0.8, 0, 0]])
    # NEUTROPHIL: (0.8 > 0.6), (0.8 > 0.2), (0.4 < 0.6), (0.4 > 0.2): 3 of 4 pairs
    assert classification_metrics(actual, probabilities.argmax(axis=1), probabilities, classes=CLASSES)["roc_auc"]["NEUTROPHIL"] \
        == pytest.approx(0.75)


def test_mcnemar_exact_on_a_known_table():
    a = [True] * 10 + [False] * 2 + [True] * 20 + [False] * 5
    b = [False] * 10 + [True] * 2 + [True] * 20 + [False] * 5
    result = mcnemar_exact(a, b)
    assert (result["only_a_right"], result["only_b_right"]) == (10, 2)
    # two-sided exact binomial: 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert result["p_value"] == pytest.approx(158 / 4096)
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0


def test_holm_adjusts_in_step_down_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_paired_bootstrap_interval_covers_the_difference_and_clusters_images():
    rng = np.random.default_rng(0)
    a = rng.random(100) < 0.9
    b = rng.random(100) < 0.6
    images = np.arange(100)
    [pair] = paired_comparisons({"a": a, "b": b}, images, ["r"] * 100)
    low, high = pair["difference_ci95"]
    assert pair["difference"] == pytest.approx(a.mean() - b.mean())
    assert low < pair["difference"] < high and low > 0
    assert pair["mcnemar"][0]["p_value"] < 0.05 and "significant at 0.05" in describe_pair(pair)
    # the same 100 answers seen twice (two repeats) must not narrow the interval: images are resampled whole
    [twice] = paired_comparisons({"a": np.tile(a, 2), "b": np.tile(b, 2)}, np.tile(images, 2),
                                 ["r1"] * 100 + ["r2"] * 100)
    assert twice["difference_ci95"] == pytest.approx([low, high], abs=0.02)
    assert len(twice["mcnemar"]) == 2
