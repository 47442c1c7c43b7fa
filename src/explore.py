"""Stage explore: per-class average image and RGB pixel-intensity distribution of the prepared crops."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from bloodcells.core.atomic import save_figure
from bloodcells.data import classes as class_list
from bloodcells.core.errors import stage_main
from bloodcells.config.params import load_params

CLEAN_DIR = Path("data/clean")
PLOT_DIR = Path("plots/explore")


def images_by_class(max_per_class):
    frame = pd.concat(pd.read_csv(CLEAN_DIR / f"{s}.csv") for s in ("train", "val", "test"))
    frame = frame.drop_duplicates("image")
    return {
        label: np.stack([np.asarray(Image.open(CLEAN_DIR / "images" / f"{name}.png").convert("RGB"))
                         for name in frame.loc[frame["label"] == label, "image"].iloc[:max_per_class]])
        for label in class_list.read(CLEAN_DIR)
    }


def plot_average_images(images):
    figure, axes = plt.subplots(1, len(images), figsize=(3 * len(images), 3.3), squeeze=False)
    axes = axes[0]
    for ax, (label, stack) in zip(axes, images.items()):
        ax.imshow(stack.mean(axis=0).astype(np.uint8))
        ax.set_title(f"{label}\n(n={len(stack)})", fontsize=10)
        ax.axis("off")
    figure.suptitle("Average image per class")
    save_figure(figure, PLOT_DIR / "average_images.png")
    plt.close(figure)


def plot_pixel_distribution(images):
    figure, axes = plt.subplots(1, len(images), figsize=(3.5 * len(images), 3), sharey=True, squeeze=False)
    axes = axes[0]
    bins = np.arange(257)
    for ax, (label, stack) in zip(axes, images.items()):
        for channel, colour in enumerate(("red", "green", "blue")):
            counts, _ = np.histogram(stack[..., channel], bins=bins, density=True)
            ax.plot(bins[:-1], counts, color=colour, linewidth=1)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("intensity")
    axes[0].set_ylabel("share of pixels")
    figure.suptitle("RGB pixel-intensity distribution per class")
    save_figure(figure, PLOT_DIR / "pixel_distribution.png")
    plt.close(figure)


@stage_main
def main():
    images = images_by_class(load_params(("explore",)).explore.max_images_per_class)
    plot_average_images(images)
    plot_pixel_distribution(images)
    print(f"wrote {PLOT_DIR}/average_images.png and pixel_distribution.png")


if __name__ == "__main__":
    main()
