"""Stage external@<name>: score every trained model on an external test set (one entry of external.sets).

Usage: python src/external.py NAME

The set (a local folder or zip, Kaggle's dataset-master or one folder per class) is cut as its own layout is cut
(a BCCD photograph around its white cell, a single-cell image as its centred square) at each model's crop size,
and its classes are matched to the model's by name (any letter case) or by the set's `rename`. Per model:
metrics/external/<name>/<model>.json (the test split's metrics on the images of classes the model knows, plus
what it called the images of classes it does not know, and the classes the set lacks),
metrics/external/<name>/predictions/<model>.csv (every image), plots/external/<name>/<model>_confusion.png and
<model>_errors.png; metrics/external/<name>/data.json says what was read, and transfer.json (with
plots/external/<name>/transfer.png) sets each model's accuracy on the set beside its own test split's.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bloodcells.data import external_sets as external
from bloodcells.core.atomic import atomic_file, write_json
from bloodcells.core.errors import UserError, stage_main
from bloodcells.evaluation.transfer import plot_transfer, transfer_record
from bloodcells.evaluation.plots import count_confusion, plot_confusion, plot_errors
from bloodcells.models.adaptation import adapt_batch_norm
from bloodcells.models.inference import calibrate, load_checkpoint, model_inputs, predict_probabilities
from bloodcells.config.archs import ARCHS
from bloodcells.config.params import load_params
from bloodcells.training.loop import seed_everything


def write_predictions(path, found, probabilities, classes):
    frame = pd.DataFrame({"image": found.names, "given": found.given, "actual": found.labels,
                          "predicted": [classes[i] for i in probabilities.argmax(axis=1)]})
    for i, label in enumerate(classes):
        frame[f"p_{label}"] = probabilities[:, i].round(5)
    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False)


def report(name, model, metrics):
    low, high = metrics["accuracy_ci95"]
    line = (f"{model} on {name}: accuracy {metrics['accuracy']:.3f} ({metrics['n_correct']}/{metrics['n_total']}, "
            f"95% CI {low:.2f}-{high:.2f}), macro sensitivity {metrics['macro_sensitivity']:.3f}")
    for label, seen in metrics["unknown_classes"].items():
        called = ", ".join(f"{cls} {n}" for cls, n in seen["predicted_as"].items() if n)
        line += f"; {label} ({seen['images']}, not a class of the model): called {called}"
    if metrics["missing_classes"]:
        line += f"; no images of {', '.join(metrics['missing_classes'])}"
    print(line)


@stage_main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a set of external.sets in params.yaml")
    args = parser.parse_args()
    config = load_params(("evaluate", "external"))
    sets = config.external.sets
    if args.name not in sets:
        raise UserError(f"external.sets has no set {args.name!r} (it has: {', '.join(sets) or 'none'}); add it, "
                        f"e.g. dvc exp run -S '+external.sets.{args.name}.source=/path/to/copy'")
    settings, evaluate = sets[args.name], config.evaluate
    seed_everything(0)
    models = {}
    for model in ARCHS:  # dvc.yaml names each family's outputs
        path = Path("models") / f"{model}.pt"
        models[model] = (path, *load_checkpoint(path, model))
    model_classes = list(next(iter(models.values()))[2].classes)
    found = external.only_folds(external.read_set(args.name, settings,
                                                  [checkpoint.crop for _, _, checkpoint in models.values()],
                                                  model_classes), settings, model_classes)
    if found.notes:
        print(f"handled {len(found.notes)} input problem(s): " + " | ".join(found.notes[:5])
              + (" | ..." if len(found.notes) > 5 else ""))
    metrics_dir, plots_dir = Path("metrics/external") / args.name, Path("plots/external") / args.name
    write_json(metrics_dir / "data.json", external.data_summary(found, model_classes))
    scored = {}
    for model, (path, network, checkpoint) in models.items():
        classes = list(checkpoint.classes)
        crops = external.images_for(found, checkpoint.crop, settings)
        inputs = model_inputs(crops, checkpoint)
        mean, std = external.statistics(inputs, checkpoint, settings)
        if settings.adapt == "batch_norm":
            network, adapted = adapt_batch_norm(network, inputs, mean, std, evaluate.batch_size)
            if not adapted:
                print(f"{model} has no batch norm: scored without adapt: batch_norm")
        probabilities = calibrate(predict_probabilities(network, inputs, mean, std, batch_size=evaluate.batch_size,
                                                        tta=evaluate.tta), checkpoint, evaluate.tta).numpy()
        metrics = external.score(found.labels, probabilities, classes)
        write_json(metrics_dir / f"{model}.json", metrics)
        write_predictions(metrics_dir / "predictions" / f"{model}.csv", found, probabilities, classes)
        predicted = [classes[i] for i in probabilities.argmax(axis=1)]
        rows = [c for c in classes if c in set(found.labels)] + sorted(set(found.labels) - set(classes))
        plot_confusion(count_confusion(found.labels, predicted, rows, classes), rows, classes,
                       f"{model} on {args.name}: accuracy {metrics['accuracy']:.3f} "
                       f"({metrics['scored']} images of its classes)", plots_dir / f"{model}_confusion.png",
                       row_title="the set's label")
        known = np.array([label in classes for label in found.labels])
        actual = np.array([classes.index(label) for label in np.array(found.labels)[known]])
        plot_errors(f"{model} on {args.name}", crops[known], list(np.array(found.names)[known]), actual,
                    probabilities[known], plots_dir / f"{model}_errors.png", classes, what="images")
        report(args.name, model, metrics)
        scored[model] = metrics
    own = {model: json.loads((Path("metrics/evaluate") / f"{model}.json").read_text()) for model in models}
    record = transfer_record(args.name, own, scored)
    write_json(metrics_dir / "transfer.json", record)
    plot_transfer(record, plots_dir / "transfer.png")


if __name__ == "__main__":
    main()
