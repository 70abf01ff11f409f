"""Figures for the evaluation and the report (matplotlib, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mnistflow.atomic import atomic_path  # noqa: E402


def _save(fig, dest: str | Path) -> None:
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def confusion_matrix(matrix: np.ndarray, class_names, title: str, dest: str | Path) -> None:
    """Counts of true (rows) against predicted (columns) classes, each count written large."""
    fig, ax = plt.subplots(figsize=(8, 7.5))
    image = ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    ax.tick_params(labelsize=11)
    ax.xaxis.label.set_fontsize(12)
    ax.yaxis.label.set_fontsize(12)
    threshold = matrix.max() / 2
    # Shrink the numbers only where four digits would overlap their neighbours.
    fontsize = 11 if matrix.max() < 1000 else 9
    for (row, col), count in np.ndenumerate(matrix):
        if count == 0 and row != col:
            continue  # empty off-diagonal cells stay blank, so the errors stand out
        colour = "white" if count > threshold else "black"
        ax.text(col, row, int(count), ha="center", va="center", color=colour, fontsize=fontsize)
    fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, dest)


def misclassified(images, true, predicted, class_names, title: str, dest: str | Path) -> None:
    """A grid of (at most) the first 25 misclassified test images with both labels.

    The tiles are one image on one axes: 25 axes took most of an evaluation's time.
    """
    count = min(len(images), 25)
    side, label = images.shape[1] + 2, 14  # pixels per tile, and above it for its labels
    mosaic = np.zeros((5 * (side + label), 5 * side))
    for i in range(count):
        row, col = divmod(i, 5)
        top = row * (side + label) + label + 1
        mosaic[top : top + side - 2, col * side + 1 : (col + 1) * side - 1] = images[i]
    fig, ax = plt.subplots(figsize=(7, 8.5))
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=max(float(np.max(images, initial=0)), 1e-9))
    ax.axis("off")
    for i in range(count):
        row, col = divmod(i, 5)
        text = f"true {class_names[true[i]]}\npred {class_names[predicted[i]]}"
        y = row * (side + label) + label
        ax.text((col + 0.5) * side, y, text, ha="center", va="bottom", fontsize=8)
    if count == 0:
        ax.text(mosaic.shape[1] / 2, mosaic.shape[0] / 2, "no misclassified images", ha="center")
    ax.set_title(title)
    _save(fig, dest)


def training_curves(histories: dict[str, list[dict]], dest: str | Path) -> None:
    """Train vs. validation loss and accuracy per epoch, one row of panels per run."""
    fig, axes = plt.subplots(len(histories), 2, figsize=(10, 3 * len(histories)), squeeze=False)
    for (run, rows), (loss_ax, acc_ax) in zip(histories.items(), axes, strict=True):
        epochs = [row["epoch"] for row in rows]
        for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            ax.plot(epochs, [row[metric] for row in rows], label=f"train {metric}")
            ax.plot(epochs, [row[f"val_{metric}"] for row in rows], label=f"validation {metric}")
            ax.set(title=f"{run}: {metric}", xlabel="epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
            ax.legend()
    fig.tight_layout()
    _save(fig, dest)
