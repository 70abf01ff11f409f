"""Figures for the evaluation, the report and a parameter study (matplotlib, no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mnistflow.atomic import atomic_path  # noqa: E402
from mnistflow.hyperparameter_values import hyperparameter_text, value_order  # noqa: E402


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


def _axis_values(values: list) -> tuple[list, bool]:
    """Plot positions for a hyperparameter's values, and whether the axis is numeric."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric:
        return values, True
    labels = sorted({json.dumps(v) for v in values})
    return [labels.index(json.dumps(v)) for v in values], False


def sweep_validation_accuracy(
    rows: list[dict], results: list[dict], panels: dict[str, list[str]], dest: str | Path
) -> None:
    """A parameter study's validation accuracy (mean ± std, and each seed) per family and
    swept hyperparameter: rows are mnistflow.aggregate's settings, results its runs, panels
    {family: the hyperparameters it swept, or ["setting"]}.

    Settings that agree on the other swept hyperparameters are joined by a line; the winner
    is starred.
    """
    families = list(dict.fromkeys(row["family"] for row in rows))
    columns = max(len(keys) for keys in panels.values())
    fig, axes = plt.subplots(
        len(families), columns, figsize=(5 * columns, 5 * len(families)), squeeze=False
    )
    for family, family_axes in zip(families, axes, strict=True):
        family_rows = [row for row in rows if row["family"] == family]
        seeds = {}
        for result in results:
            if result["family"] == family:
                seeds.setdefault(result["setting"], []).append(result["val_accuracy"])
        for ax, key in zip(family_axes, panels[family], strict=False):
            _plot_panel(ax, family, key, panels[family], family_rows, seeds)
        for ax in family_axes[len(panels[family]) :]:
            ax.axis("off")
    fig.tight_layout()
    _save(fig, dest)


def _plot_panel(ax, family: str, key: str, keys: list[str], rows: list[dict], seeds: dict):
    def value(row, k):
        return row["setting"] if k == "setting" else row["hyperparameters"].get(k)

    x_all, numeric = _axis_values([value(row, key) for row in rows])
    x_of = {row["setting"]: x for row, x in zip(rows, x_all, strict=True)}
    others = [k for k in keys if k != key]
    series: dict[str, list[dict]] = {}
    for row in rows:
        label = ", ".join(f"{k}={hyperparameter_text(value(row, k))}" for k in others)
        series.setdefault(label, []).append(row)

    def series_order(item):  # by the other hyperparameters' values, numbers numerically
        return tuple(value_order(value(item[1][0], k)) for k in others)

    for label, members in sorted(series.items(), key=series_order):
        members.sort(key=lambda row: x_of[row["setting"]])
        xs = [x_of[row["setting"]] for row in members]
        line = ax.errorbar(
            xs,
            [row["val_accuracy_mean"] for row in members],
            yerr=[row["val_accuracy_std"] or 0.0 for row in members],
            marker="o",
            capsize=3,
            label=label or None,
        )
        colour = line.lines[0].get_color()
        for row in members:
            points = seeds.get(row["setting"], [])
            ax.scatter([x_of[row["setting"]]] * len(points), points, s=10, alpha=0.35, color=colour)
    for row in rows:
        if row["winner"]:
            ax.scatter(
                [x_of[row["setting"]]],
                [row["val_accuracy_mean"]],
                marker="*",
                s=260,
                color="gold",
                edgecolors="black",
                zorder=5,
                label="winner",
            )
    if numeric:
        positive = [x for x in x_all if x > 0]
        if len(positive) == len(x_all) and max(positive) / min(positive) >= 10:
            ax.set_xscale("log")
        ticks = sorted(set(x_all))
        if len(ticks) <= 10:  # label the values tried, not round numbers between them
            ax.set_xticks(ticks, [hyperparameter_text(x) for x in ticks])
            ax.minorticks_off()
    else:
        labels = sorted({json.dumps(value(row, key)) for row in rows})
        ax.set_xticks(range(len(labels)))
        texts = [label.strip('"') for label in labels]
        long = max(map(len, texts)) > 10  # tilt long labels so that they do not overlap
        ax.set_xticklabels(texts, rotation=30 if long else 0, ha="right" if long else "center")
    ax.set(title=f"{family}: validation accuracy vs {key}", xlabel=key, ylabel="val accuracy")
    if len(series) <= 12:  # below the panel, where it hides no point
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
