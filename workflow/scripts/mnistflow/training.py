"""Train one run: fit a model family on the preprocessed data and save what users need."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from pathlib import Path

import keras

from mnistflow import models, preprocess
from mnistflow.atomic import atomic_path, write_text

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


class EpochLog(keras.callbacks.Callback):
    """One plain line per epoch (no progress-bar control characters), and the history rows."""

    def __init__(self, epochs: int, log: Callable[[str], None]):
        super().__init__()
        self.epochs, self.log, self.rows = epochs, log, []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:5]}}
        row["seconds"] = round(time.perf_counter() - self.started, 3)
        self.rows.append(row)
        metrics = " - ".join(f"{k}: {row[k]:.4f}" for k in HISTORY_COLUMNS[1:5])
        self.log(f"Epoch {row['epoch']}/{self.epochs} - {row['seconds']:.1f}s - {metrics}")


def history_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def save_param_hdf5(model: keras.Model, dest: str | Path) -> None:
    """Weights in the legacy HDF5 layout that ``model.load_weights("param.hdf5")`` reads.

    Keras 3's ``save_weights`` only writes its new ``.weights.h5`` layout, which its own
    ``load_weights`` refuses under a ``.hdf5`` name; the seeds' users load ``param.hdf5``.
    So we write the layout Keras' loader for ``.h5``/``.hdf5`` names reads, with h5py and
    public Keras APIs only (Keras' own writer for it lives in a private module): attributes
    ``layer_names``, ``backend``, ``keras_version``; one group per layer (sorted by name) with
    a ``weight_names`` attribute and one dataset per weight, trainable weights first; a group
    ``top_level_model_weights`` for weights that belong to no layer.
    """
    import h5py

    def write_weights(group, weights):
        names = [weight.path.encode("utf8") for weight in weights]
        group.attrs["weight_names"] = names  # a list: h5py stores variable-length strings
        for name, weight in zip(names, weights, strict=True):
            group.create_dataset(name, data=keras.ops.convert_to_numpy(weight))

    in_layers = {id(w) for layer in model.layers for w in layer.weights}
    with atomic_path(dest) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        h5.attrs["backend"] = keras.backend.backend().encode("utf8")
        h5.attrs["keras_version"] = keras.__version__.encode("utf8")
        for layer in sorted(model.layers, key=lambda layer: layer.name):
            write_weights(
                h5.create_group(layer.name), layer.trainable_weights + layer.non_trainable_weights
            )
        own = model.trainable_weights + model.non_trainable_weights
        write_weights(
            h5.create_group("top_level_model_weights"), [w for w in own if id(w) not in in_layers]
        )


def train(
    data: str | Path,
    family: str,
    hp: dict,
    *,
    param_hdf5: str | Path,
    model_keras: str | Path,
    history: str | Path,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Fit ``family`` with hyperparameters ``hp``; write weights, full model and history."""
    train_x, train_y = preprocess.load_split(data, "train")
    val_x, val_y = preprocess.load_split(data, "val")
    model = models.build_model(family, hp)
    steps_per_epoch = math.ceil(len(train_y) / hp["batch_size"])
    models.compile_model(model, hp, steps_per_epoch)
    log(f"Training {family} on {len(train_y)} images, validating on {len(val_y)}: {hp}")
    epoch_log = EpochLog(hp["epochs"], log)
    # With weight averaging, validate the averaged weights: those are what fit() leaves in
    # the model at its end, and so what param.hdf5 and model.keras hold.
    averaging = []
    if model.optimizer.use_ema:
        averaging.append(keras.callbacks.SwapEMAWeights())
        log(f"Averaging the weights with momentum {model.optimizer.ema_momentum:.4g}")
    model.fit(
        models.reshape_for(model, train_x),
        train_y,
        batch_size=hp["batch_size"],
        epochs=hp["epochs"],
        validation_data=(models.reshape_for(model, val_x), val_y),
        callbacks=[*averaging, epoch_log],
        verbose=0,
    )
    save_param_hdf5(model, param_hdf5)
    with atomic_path(model_keras) as tmp:
        model.save(tmp)
    write_text(history, history_csv(epoch_log.rows))
    return epoch_log.rows
