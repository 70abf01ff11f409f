"""Evaluate one trained run on the test set: the seed's printout plus per-class metrics."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn import metrics as skmetrics

from mnistflow import models, plots, preprocess, versions
from mnistflow.atomic import write_text


def hyperparameters_used(hp: dict, train_images: int) -> dict:
    """``hp`` with the ema_momentum training actually used (lowered for short runs)."""
    if "ema_momentum" not in hp:
        return hp
    steps_per_epoch = math.ceil(train_images / hp["batch_size"])
    return {**hp, "ema_momentum": round(models.averaging_momentum(hp, steps_per_epoch), 4)}


def evaluate(
    data: str | Path,
    param_hdf5: str | Path,
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
    """Load ``param.hdf5`` into the family's architecture, as the seed's estimate task does."""
    test_x, test_y = preprocess.load_split(data, "test")
    model = models.build_model(family, hp)
    model.load_weights(str(param_hdf5))
    models.compile_model(model)
    inputs = models.reshape_for(model, test_x)
    loss, accuracy = model.evaluate(inputs, test_y, batch_size=1000, verbose=0)
    log(f"Test loss: {loss}")
    log(f"Test accuracy: {accuracy}")
    predicted = model.predict(inputs, batch_size=1000, verbose=0).argmax(axis=1)
    labels = list(range(len(class_names)))
    report = skmetrics.classification_report(
        test_y,
        predicted,
        labels=labels,
        target_names=list(class_names),
        output_dict=True,
        zero_division=0,
    )
    confusion = skmetrics.confusion_matrix(test_y, predicted, labels=labels)
    result = {
        "run": run,
        "family": family,
        "hyperparameters": hyperparameters_used(hp, preprocess.split_size(data, "train")),
        "test_loss": float(loss),
        "test_accuracy": float(accuracy),
        "test_images": int(len(test_y)),
        "per_class": {name: report[name] for name in class_names},
        "confusion_matrix": confusion.tolist(),
        "software": versions.software_versions(),
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
