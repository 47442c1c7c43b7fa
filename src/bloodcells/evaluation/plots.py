"""Pictures of a model's test predictions: ROC curves, a reliability diagram and a gallery of its mistakes."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import RocCurveDisplay

from bloodcells.core.atomic import save_figure
from bloodcells.evaluation.metrics import micro_roc_curve, reliability_bins

GALLERY_MOST = 64  # a figure of every error of a 2,000-image test split would be unreadable
GALLERY_COLUMNS = 6


def plot_roc(results, path, classes):
    """One panel per model: the one-vs-rest ROC curve of each class present, and their micro-average."""
    figure, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4.2), squeeze=False)
    for ax, (name, (actual, probabilities, metrics)) in zip(axes[0], results.items()):
        for i, label in enumerate(classes):
            positive = actual == i
            if 0 < positive.sum() < len(actual):
                RocCurveDisplay.from_predictions(positive, probabilities[:, i], ax=ax, name=label[:4],
                                                 plot_chance_level=i == 0)
        fpr, tpr, _ = micro_roc_curve(actual, probabilities)
        ax.plot(fpr, tpr, color="black", linewidth=2, label="micro-average")
        auc = metrics["macro_roc_auc"]
        ax.set_title(f"{name}: macro AUC {auc:.3f}" if auc is not None else name)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize=7)
    save_figure(figure, path)
    plt.close(figure)


def plot_reliability(results, path, bins=10, before=None):
    """Accuracy against mean top-class probability per confidence bin; the diagonal is perfect calibration. With
    `before` ({model: probabilities}), each model's curve before temperature scaling too, dashed in its colour."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    width = 0.8 / bins / len(results)
    for k, (name, (actual, probabilities, metrics)) in enumerate(results.items()):
        colour = f"C{k}"
        if before is not None and name in before:
            rows = [row for row in reliability_bins(actual, before[name], bins) if row["count"]]
            top.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], color=colour, linestyle=":",
                     marker=".", alpha=0.7, label=f"{name} before (ECE {metrics['expected_calibration_error_before']:.3f})")
        rows = [row for row in reliability_bins(actual, probabilities, bins) if row["count"]]
        after = " calibrated" if before is not None else ""
        top.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], color=colour, marker="o",
                 label=f"{name}{after} (ECE {metrics['expected_calibration_error']:.3f})")
        centres = np.array([(r["low"] + r["high"]) / 2 for r in rows])
        bottom.bar(centres + (k - (len(results) - 1) / 2) * width, [r["count"] for r in rows], width, label=name,
                   color=colour)
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1.02)
    top.set_title("Reliability diagram (test split)" + (": dotted before, solid after temperature scaling"
                                                        if before is not None else ""), fontsize=9)
    top.legend(fontsize=7, loc="upper left")
    bottom.set_xlabel("top-class probability")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    save_figure(figure, path)
    plt.close(figure)


def draw_error(ax, image, name, truth, called, probability):
    """One misclassified crop of a gallery, titled with its file name, true class and what it was called."""
    ax.imshow(np.asarray(image).transpose(1, 2, 0))
    ax.set_title(f"{name.removeprefix('BloodImage_')}\ntrue {truth[:5]}, called {called[:5]} {probability:.2f}",
                 fontsize=8)


def plot_errors(name, images, names, actual, probabilities, path, classes, what="test images"):
    """Every misclassified crop (the GALLERY_MOST most confident where there are more) with its file name,
    true class and predicted class with its probability."""
    predicted = probabilities.argmax(axis=1)
    every_wrong = np.flatnonzero(predicted != actual)
    wrong = every_wrong
    if len(wrong) > GALLERY_MOST:
        confidence = probabilities[wrong, predicted[wrong]]
        wrong = wrong[np.argsort(-confidence, kind="stable")[:GALLERY_MOST]]
    columns = max(1, min(GALLERY_COLUMNS, len(wrong)))
    rows = max(1, math.ceil(len(wrong) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.45 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        draw_error(ax, images[i], names[i], classes[actual[i]], classes[predicted[i]], probabilities[i, predicted[i]])
    if not len(wrong):
        axes[0, 0].text(0.5, 0.5, f"no misclassified\n{what}", ha="center", va="center")
    shown = f" (the {len(wrong)} most confident shown)" if len(wrong) < len(every_wrong) else ""
    figure.suptitle(f"{name}: {len(every_wrong)} of {len(actual)} {what} misclassified{shown}", fontsize=10)
    save_figure(figure, path)
    plt.close(figure)


def plot_pair_errors(name, images, names, actual, probabilities, pairs, path, classes, per_row=GALLERY_COLUMNS):
    """One row per hardest pair (metrics.hardest_pairs): its misclassified crops, both directions, the most
    confident first, at most `per_row` of them."""
    predicted = probabilities.argmax(axis=1)
    index = {c: i for i, c in enumerate(classes)}
    rows = []
    for pair in pairs:
        a, b = (index[c] for c in pair["pair"])
        wrong = np.flatnonzero(((actual == a) & (predicted == b)) | ((actual == b) & (predicted == a)))
        confidence = probabilities[wrong, predicted[wrong]]
        rows.append((pair, wrong[np.argsort(-confidence, kind="stable")[:per_row]]))
    figure, axes = plt.subplots(max(1, len(rows)), per_row, figsize=(2.1 * per_row, 2.45 * max(1, len(rows)) + 0.5),
                                squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row, (pair, shown) in enumerate(rows):
        for ax, i in zip(axes[row], shown):
            draw_error(ax, images[i], names[i], classes[actual[i]], classes[predicted[i]],
                       probabilities[i, predicted[i]])
        a, b = pair["pair"]
        axes[row, 0].text(-0.12, 0.5, f"{a} / {b}: {pair['errors']}", transform=axes[row, 0].transAxes,
                          rotation=90, ha="right", va="center", fontsize=9)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no misclassified\ntest images", ha="center", va="center")
    figure.suptitle(f"{name}: the errors of the classes most often taken for each other (a row per pair, "
                    f"errors both ways; the most confident {per_row} shown)", fontsize=10)
    save_figure(figure, path)
    plt.close(figure)


def count_confusion(labels, predicted, row_classes, column_classes):
    """Images per (true class, predicted class), where the rows (the data's classes) need not be the columns (the
    model's): an external set's classes the model does not know get rows of their own."""
    counts = np.zeros((len(row_classes), len(column_classes)), dtype=int)
    rows, columns = {c: i for i, c in enumerate(row_classes)}, {c: i for i, c in enumerate(column_classes)}
    for label, guess in zip(labels, predicted):
        counts[rows[label], columns[guess]] += 1
    return counts


def plot_confusion(counts, row_classes, column_classes, title, path, row_title="actual"):
    """The confusion matrix coloured by each row's share, so an error stands out however large the diagonal, and
    labelled with the counts. A row class that is not a column (not a class of the model) says so."""
    counts = np.asarray(counts)
    figure, axes = plt.subplots(figsize=(max(5.5, 0.8 * len(column_classes) + 2.5),
                                         max(4.5, 0.6 * len(row_classes) + 2)))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    shown = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        axes.text(j, i, str(count), ha="center", va="center", fontsize=8,
                  color="white" if shares[i, j] > 0.6 else "black")
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label=f"share of the {row_title} class's images")
    axes.set_xticks(range(len(column_classes)), column_classes, rotation=30, ha="right", fontsize=8)
    axes.set_yticks(range(len(row_classes)),
                    [c if c in column_classes else f"{c} (not a class of the model)" for c in row_classes], fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel(row_title)
    axes.set_title(title, fontsize=10)
    save_figure(figure, path)
    plt.close(figure)
