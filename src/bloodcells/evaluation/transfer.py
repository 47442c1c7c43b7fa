"""The transfer record of an external set: each family's accuracy on its own laboratory's test split against its
accuracy on the other laboratory's images, with 95 % intervals, as numbers (metrics/external/<name>/transfer.json,
which `dvc metrics diff` compares between experiments) and as a picture."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bloodcells.core.atomic import save_figure


def transfer_record(name, own, scored):
    """{family: own test split's and the set's accuracy, intervals and images, and the fall between them} from the
    evaluate stage's metrics (`own`) and the set's (`scored`), each {family: metrics dict}."""
    families = {}
    for family, theirs in scored.items():
        home = own[family]
        families[family] = {
            "own_test_accuracy": home["accuracy"], "own_test_ci95": home["accuracy_ci95"],
            "own_test_images": home["n_total"],
            f"{name}_accuracy": theirs["accuracy"], f"{name}_ci95": theirs["accuracy_ci95"],
            f"{name}_images": theirs["n_total"],
            "fall": round(home["accuracy"] - theirs["accuracy"], 4)}
    return {"tested_on": name, "models": families}


def plot_transfer(record, path):
    """Per family, a bar for its own test split and one for the set, each with its 95 % interval."""
    name, families = record["tested_on"], record["models"]
    figure, ax = plt.subplots(figsize=(1.8 + 1.6 * len(families), 3.6))
    positions = np.arange(len(families))
    for offset, (key, label, colour) in zip((-0.2, 0.2), (("own_test", "own test split", "#4c72b0"),
                                                          (name, name, "#dd8452"))):
        accuracy = np.array([values[f"{key}_accuracy"] for values in families.values()])
        low, high = np.array([values[f"{key}_ci95"] for values in families.values()]).T
        ax.bar(positions + offset, accuracy, width=0.38, color=colour, label=label,
               yerr=[accuracy - low, high - accuracy], capsize=4)
        for x, value in zip(positions + offset, accuracy):
            ax.text(x, 0.02, f"{value:.2f}", ha="center", va="bottom", fontsize=8, color="white")
    ax.set_xticks(positions, list(families))
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95 % interval)")
    ax.set_title(f"trained here, tested here and on {name}")
    ax.legend(loc="upper right", fontsize=8)
    save_figure(figure, path)
    plt.close(figure)
