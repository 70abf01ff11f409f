"""A training whose loss or weights stop being finite stops, before anything is saved.

Keras trains on through NaN: the loss stays nan and every weight becomes NaN, and the run
"succeeds". The training is deterministic (mnistflow.training), so rerunning the same run
diverges again: the error says what to change. Checkpoints are written after this check
(its callback runs first), so none holds NaN weights either.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from mnistflow import checkpoint


class NonFiniteTraining(RuntimeError):
    """The loss or the weights became NaN or infinite; the message names the run and the fix."""


def _advice(family: str, run: str, hp: dict) -> str:
    return (
        "Nothing was saved (no param.hdf5, no model.keras). The training is deterministic: "
        "rerunning it unchanged diverges again. Lower the learning rate "
        f"(hyperparameters.{family}.learning_rate, now {hp.get('learning_rate')}, in "
        "config/config.yaml or --config; for a run of a parameter study, its setting in "
        "sweep:), or check the data: snakemake --forcerun preprocess."
    )


def _finite(value) -> bool:
    return math.isfinite(float(np.asarray(value)))


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises NonFiniteTraining at the first step whose loss is not finite, and at an epoch's
    end whose validation loss or weights are not (the last update can diverge unseen)."""

    def __init__(self, family: str, run: str, hp: dict):
        super().__init__()
        self.family, self.run, self.hp = family, run, hp

    def _stop(self, what: str, epoch: int):
        raise NonFiniteTraining(
            f"training {self.family}/{self.run} diverged: {what} in epoch {epoch + 1}. "
            + _advice(self.family, self.run, self.hp)
        )

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs and not _finite(logs["loss"]):
            self._stop(f"the loss became {float(np.asarray(logs['loss']))}", self.epoch)

    def on_epoch_end(self, epoch, logs=None):
        for key in ("loss", "val_loss"):
            if logs and key in logs and not _finite(logs[key]):
                self._stop(f"{key} became {float(np.asarray(logs[key]))}", epoch)
        bad = non_finite_weights(self.model)
        if bad:
            self._stop(f"weights {', '.join(bad[:3])} are not finite", epoch)


def non_finite_weights(model) -> list[str]:
    """Paths of the model's weights holding NaN or infinity."""
    return [w.path for w in model.weights if not np.isfinite(checkpoint._value(w)).all()]


def check_weights(model, family: str, run: str, hp: dict) -> None:
    """Before saving: weights averaged at the end (ema) are checked here."""
    bad = non_finite_weights(model)
    if bad:
        raise NonFiniteTraining(
            f"training {family}/{run} ended with weights that are not finite "
            f"({', '.join(bad[:3])}). " + _advice(family, run, hp)
        )
