"""Stage evaluate: deterministic inference of every trained model on the test split.

Per model: metrics/evaluate/<model>.json (accuracy, sensitivity, specificity, balanced accuracy, kappa,
ROC AUC, calibration error before and after the model's temperature, accuracy when it may abstain),
metrics/evaluate/predictions/<model>.csv (calibrated predictions, rendered by `dvc plots` with the confusion
template), <model>_roc.csv (micro-averaged one-vs-rest ROC curve) and <model>_risk_coverage.csv (accuracy against the
share of images answered, for `predict --min-confidence`),
plots/evaluate/<model>_confusion.png, <model>_errors.png (every misclassified crop) and <model>_pairs.png (the
errors of the three pairs of classes most often taken for each other, metrics' hardest_pairs); for all models
plots/evaluate/roc.png and reliability.png (before and after calibration).
Inference timings go to metrics/evaluate/timing.json (kept apart: they vary run to run).
"""
import time
from pathlib import Path

import pandas as pd

from bloodcells.data import classes as class_list, dataset as data
from bloodcells.evaluation.abstention import abstention_summary
from bloodcells.core.atomic import atomic_file, write_json
from bloodcells.core.errors import stage_main
from bloodcells.evaluation.plots import plot_confusion, plot_errors, plot_pair_errors, plot_reliability, plot_roc
from bloodcells.models.calibration import temperature_for
from bloodcells.evaluation.metrics import classification_metrics, expected_calibration_error, micro_roc_curve
from bloodcells.models.inference import calibrate, load_checkpoint, model_inputs, predict_probabilities
from bloodcells.config.archs import ARCHS
from bloodcells.config.params import load_params
from bloodcells.training.loop import seed_everything

METRICS_DIR = Path("metrics/evaluate")
PLOTS_DIR = Path("plots/evaluate")
PREDICTIONS_DIR = METRICS_DIR / "predictions"  # small text kept in git (cache: false), unlike the pictures


def write_predictions(path, names, actual, probabilities, classes):
    predicted = probabilities.argmax(dim=1)
    frame = pd.DataFrame({"image": names, "actual": [classes[i] for i in actual],
                          "predicted": [classes[i] for i in predicted]})
    for i, label in enumerate(classes):
        frame[f"p_{label}"] = probabilities[:, i].numpy().round(5)
    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_roc_curve(path, actual, probabilities):
    fpr, tpr, _ = micro_roc_curve(actual, probabilities)
    with atomic_file(path) as tmp:
        pd.DataFrame({"fpr": fpr.round(5), "tpr": tpr.round(5)}).to_csv(tmp, index=False)


def write_risk_coverage(path, curve):
    with atomic_file(path) as tmp:
        pd.DataFrame(curve, columns=["threshold", "coverage", "accuracy", "answered"]).to_csv(tmp, index=False)


@stage_main
def main():
    settings = load_params(("evaluate",)).evaluate
    seed_everything(0)
    classes = class_list.read()
    images, labels, names = data.load_split("test", require_all_classes=False)
    timing, results, before = {}, {}, {}
    actual = labels.numpy()
    for name in ARCHS:  # dvc.yaml names each family's outputs
        model, checkpoint = load_checkpoint(Path("models") / f"{name}.pt", name, classes)
        test_images = model_inputs(images, checkpoint)
        started = time.perf_counter()
        uncalibrated = predict_probabilities(model, test_images, checkpoint.mean, checkpoint.std,
                                             batch_size=settings.batch_size, tta=settings.tta)
        probabilities = calibrate(uncalibrated, checkpoint, settings.tta)
        timing[name] = {"inference_ms_per_image": round(1000 * (time.perf_counter() - started) / len(images), 2)}
        predicted = probabilities.argmax(dim=1)
        metrics = classification_metrics(actual, predicted.numpy(), probabilities.numpy(), classes=classes)
        abstention, curve = abstention_summary(actual, probabilities.numpy())
        metrics |= {"temperature": temperature_for(checkpoint.temperature, settings.tta),
                    "expected_calibration_error_before": expected_calibration_error(actual, uncalibrated.numpy()),
                    "abstention": abstention}
        write_json(METRICS_DIR / f"{name}.json", metrics)
        write_predictions(PREDICTIONS_DIR / f"{name}.csv", names, labels, probabilities, classes)
        write_roc_curve(PREDICTIONS_DIR / f"{name}_roc.csv", actual, probabilities.numpy())
        write_risk_coverage(PREDICTIONS_DIR / f"{name}_risk_coverage.csv", curve)
        before[name] = uncalibrated.numpy()
        plot_confusion(metrics["confusion_matrix"], classes, classes, f"{name}: test accuracy {metrics['accuracy']:.3f}",
                       PLOTS_DIR / f"{name}_confusion.png")
        plot_errors(name, images, names, actual, probabilities.numpy(), PLOTS_DIR / f"{name}_errors.png", classes)
        plot_pair_errors(name, images, names, actual, probabilities.numpy(), metrics["hardest_pairs"],
                         PLOTS_DIR / f"{name}_pairs.png", classes)
        results[name] = (actual, probabilities.numpy(), metrics)
        low, high = metrics["accuracy_ci95"]
        print(f"{name}: test accuracy {metrics['accuracy']:.3f} ({metrics['n_correct']}/{metrics['n_total']}, "
              f"95% CI {low:.2f}-{high:.2f}), macro sensitivity {metrics['macro_sensitivity']:.3f}, "
              f"kappa {metrics['cohen_kappa']:.3f}, macro AUC {metrics['macro_roc_auc'] or float('nan'):.3f}, "
              f"ECE {metrics['expected_calibration_error_before']:.3f} -> {metrics['expected_calibration_error']:.3f} "
              f"(temperature {metrics['temperature']:g})")
    plot_roc(results, PLOTS_DIR / "roc.png", classes)
    plot_reliability(results, PLOTS_DIR / "reliability.png", before=before)
    write_json(METRICS_DIR / "timing.json", timing)


if __name__ == "__main__":
    main()
