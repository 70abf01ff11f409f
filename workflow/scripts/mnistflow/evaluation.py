"""Score one trained run on the test set: the seed's printout plus per-class metrics.

The train step writes the trained model's class probabilities for the test images
(``predictions.npz``, see mnistflow.training); scoring them here needs neither Keras nor
its backend, whose import alone took longer than the rest of this step (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnistflow import plots, predictions, preprocess
from mnistflow.atomic import write_text

# Keras clips probabilities to [EPSILON, 1 - EPSILON] before taking their logarithm.
EPSILON = 1e-7


def crossentropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Keras' sparse_categorical_crossentropy of predicted probabilities, averaged."""
    clipped = np.clip(probabilities.astype(np.float64), EPSILON, 1 - EPSILON)
    chosen = clipped[np.arange(len(labels)), labels]
    return float(np.mean(np.log(clipped.sum(axis=1)) - np.log(chosen)))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts of (true class, predicted class): rows true, columns predicted."""
    pairs = labels.astype(np.int64) * classes + predicted
    return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


def per_class_scores(confusion: np.ndarray, class_names) -> dict[str, dict]:
    """Precision, recall, F1 and support by class, as scikit-learn's classification_report
    writes them (0 where undefined). NumPy only: importing scikit-learn took longer than
    the rest of this step."""
    hits = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(hits / predicted)
        recall = np.nan_to_num(hits / support)
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1-score": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }


def evaluate(
    data: str | Path,
    predictions_npz: str | Path,
    family: str,
    hp: dict,
    *,
    class_names,
    run: str,
    metrics_json: str | Path,
    confusion_png: str | Path,
    misclassified_png: str | Path,
    log: Callable[[str], None] = print,
) -> dict:
    """Score the trained model's test-set probabilities (``predictions.npz``) as Keras'
    ``model.evaluate`` does, and write the metrics and figures."""
    test_x, test_y = preprocess.load_split(data, "test")
    probabilities, about = predictions.load(predictions_npz, len(test_y), len(class_names))
    predicted = probabilities.argmax(axis=1)
    loss, accuracy = crossentropy(probabilities, test_y), float(np.mean(predicted == test_y))
    log(f"Test loss: {loss}")
    log(f"Test accuracy: {accuracy}")
    confusion = confusion_matrix(test_y, predicted, len(class_names))
    result = {
        "run": run,
        "family": family,
        # As trained: with the ema_momentum training used (lower than configured for short runs)
        "hyperparameters": {**hp, **about["training"]},
        "test_loss": float(loss),
        "test_accuracy": float(accuracy),
        "test_images": int(len(test_y)),
        "per_class": per_class_scores(confusion, class_names),
        "confusion_matrix": confusion.tolist(),
        "software": about["software"],  # that trained the model and predicted
    }
    write_text(metrics_json, json.dumps(result, indent=2) + "\n")
    plots.confusion_matrix(confusion, class_names, f"{run}: confusion matrix", confusion_png)
    wrong = np.flatnonzero(predicted != test_y)
    plots.misclassified(
        test_x[wrong],
        test_y[wrong],
        predicted[wrong],
        class_names,
        f"{run}: {len(wrong)} of {len(test_y)} test images misclassified",
        misclassified_png,
    )
    return result
