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
    """A grid of (at most) the first 25 misclassified test images with both labels."""
    count = min(len(images), 25)
    fig, axes = plt.subplots(5, 5, figsize=(7, 8))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < count:
            ax.imshow(images[i], cmap="gray_r")
            ax.set_title(
                f"true {class_names[true[i]]}\npred {class_names[predicted[i]]}", fontsize=8
            )
    if count == 0:
        axes[2, 2].text(0.5, 0.5, "no misclassified images", ha="center")
    fig.suptitle(title)
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
