"""The trained model's class probabilities for the test images (``predictions.npz``).

Written by the train step, which has the model in memory; read by the evaluate step, which
so needs neither Keras nor its backend. The file also records the software that computed
them and what the training used.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from mnistflow import versions
from mnistflow.atomic import atomic_path


class PredictionsError(ValueError):
    """The predictions do not belong to this test set; the message says how to redo them."""


def save(path: str | Path, probabilities: np.ndarray, *, backend: str, training: dict) -> None:
    """The test set's class probabilities, the software that computed them (Keras on
    ``backend``) and ``training``: hyperparameters as the training used them, where they differ
    from the configured ones (the weight-averaging momentum of a short run)."""
    software = {**versions.software_versions(), "keras_backend": backend}
    about = {"software": software, "training": training}
    with atomic_path(path) as tmp:
        np.savez(tmp, probabilities=probabilities, about=json.dumps(about))


def load(path: str | Path, images: int, classes: int) -> tuple[np.ndarray, dict]:
    """The probabilities and what ``save`` recorded about them."""
    try:
        with np.load(path) as saved:
            probabilities, about = saved["probabilities"], json.loads(str(saved["about"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        # NumPy's own words ("contains pickled data", "Failed to interpret") name no file.
        raise PredictionsError(
            f"{path} cannot be read as the train step's predictions ({type(error).__name__}: "
            f"{error}): it is damaged or was not written by the workflow. Delete it and rerun "
            "the workflow, which retrains this run."
        ) from None
    if probabilities.shape != (images, classes):
        raise PredictionsError(
            f"{path} holds predictions of shape {probabilities.shape}, but the test set has "
            f"{images} images of {classes} classes: it was written for other data. Delete it "
            "and rerun the workflow, which retrains this run."
        )
    return probabilities, about
