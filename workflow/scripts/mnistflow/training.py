"""Train one run: fit a model family on the preprocessed data and save what users need.

The training can be stopped at any step and resumed bit for bit (mnistflow.checkpoint):
each epoch's shuffling order comes from ``(seed, epoch)`` rather than from fit()'s own
shuffling, and each epoch is one fit() call, so that a resumed run can start one mid-way.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from mnistflow import (
    checkpoint,
    distribution,
    models,
    numerics,
    predictions,
    preprocess,
    stopping,
    summaries,
)
from mnistflow.atomic import atomic_path, write_text
from mnistflow.sources import module_files

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
# What the training's result depends on: a checkpoint written by other code is not resumed.
# This module and every package module it imports (the model, how batches are split...).
CODE = module_files(__file__)


class EpochLog(keras.callbacks.Callback):
    """One plain line per epoch (no progress-bar control characters), and the history rows."""

    def __init__(self, epochs: int, log: Callable[[str], None], resumed=None):
        super().__init__()
        self.epochs, self.log = epochs, log
        self.rows = list(resumed.rows) if resumed else []
        self.lines = list(resumed.lines) if resumed else []
        self.seconds_before = resumed.epoch_seconds if resumed else 0.0  # of a resumed epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:5]}}
        row["seconds"] = round(self.seconds(), 3)
        self.seconds_before = 0.0
        self.rows.append(row)
        metrics = " - ".join(f"{k}: {row[k]:.4f}" for k in HISTORY_COLUMNS[1:5])
        self.lines.append(f"Epoch {row['epoch']}/{self.epochs} - {row['seconds']:.1f}s - {metrics}")
        self.log(self.lines[-1])


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


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The shuffling order of one epoch: a function of (seed, epoch) only, so a resumed run
    draws the same order without saving any generator state."""
    return np.random.default_rng([seed, epoch]).permutation(count)


class AveragedValidation(keras.callbacks.SwapEMAWeights):
    """Keras' SwapEMAWeights (validate the averaged weights) without its end-of-run step.

    Its on_epoch_end writes the average into the model after the last epoch of a fit()
    call; with one fit() call per epoch that would be every epoch. The last fit() call's
    own finalize_variable_values does it once, at the end of the run (see ``_average_kept_apart``).
    """

    def on_epoch_end(self, epoch, logs=None):
        pass


@contextlib.contextmanager
def _average_kept_apart(optimizer, last_epoch: bool):
    """Every fit() call ends with ``optimizer.finalize_variable_values``, which replaces the
    weights by their average: right after the run's last epoch, wrong after the others."""
    if last_epoch or not optimizer.use_ema:
        yield
        return
    optimizer.finalize_variable_values = lambda var_list: None  # this instance only
    try:
        yield
    finally:
        del optimizer.finalize_variable_values


class Checkpointing(keras.callbacks.Callback):
    """Restores a resumed epoch's running metrics, saves every ``every_minutes`` and on a
    stop request, between steps (a step: one fit() execution of up to 32 batches)."""

    def __init__(self, trainer: _Trainer):
        super().__init__()
        self.trainer = trainer

    def on_epoch_begin(self, epoch, logs=None):
        resumed = self.trainer.resumed_metrics
        if resumed is not None:  # fit() has just reset them: put the epoch's sums back
            checkpoint.restore(self.model.metrics_variables, resumed, "metrics")
            self.trainer.resumed_metrics = None

    def on_train_batch_end(self, batch, logs=None):
        trainer = self.trainer
        # ``batch``: the last batch of this execution, counted from this fit() call's start
        trainer.batch = min(trainer.first_batch + batch + 1, trainer.steps_per_epoch)
        if trainer.batch == trainer.steps_per_epoch:
            return  # the epoch's training is done; its end is saved after validation
        stop, due = trainer.poll()
        if stop:
            trainer.save(mid_epoch=True)
            trainer.stopped()
        if due:
            trainer.save(mid_epoch=True)


class _Trainer:
    """The state of one training run between fit() calls."""

    def __init__(self, model, store, stop, epoch_log, *, steps_per_epoch, every_minutes, spread):
        self.model, self.store, self.stop, self.epoch_log = model, store, stop, epoch_log
        self.spread = spread  # distribution.Setup
        self.steps_per_epoch, self.every_seconds = steps_per_epoch, every_minutes * 60
        self.epoch = self.first_batch = self.batch = 0  # batches of the epoch: before fit(), done
        self.resumed_metrics = None
        self.last_save = time.monotonic()

    def step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.batch

    def due(self) -> bool:
        return (
            self.store is not None
            and self.every_seconds > 0
            and time.monotonic() - self.last_save >= self.every_seconds
        )

    def poll(self) -> tuple[bool, bool]:
        """(stop now, save now): taken together by all the processes of a distributed run
        (a collective there: every process calls it at the same steps)."""
        signum, due = self.spread.agree(self.stop.signum, self.due())
        if signum is not None and not self.stop:
            self.stop.signum = signum  # another process was signalled: stop with it
        return signum is not None, due

    def save(self, mid_epoch: bool) -> None:
        if self.store is None or not self.spread.writes:
            return  # process 0 saves: every process holds the same variables
        # On JAX, fit() keeps the state outside the variables between steps: fetch it.
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        state = checkpoint.State(
            epoch=self.epoch if mid_epoch else self.epoch + 1,
            batch=self.batch if mid_epoch else 0,
            step=self.step(),
            epoch_seconds=self.epoch_log.seconds() if mid_epoch else 0.0,
            rows=self.epoch_log.rows,
            lines=self.epoch_log.lines,
            variables=checkpoint.capture(self.model, with_metrics=mid_epoch),
        )
        self.store.save(state)
        self.last_save = time.monotonic()

    def stopped(self):
        where = f"epoch {self.epoch + 1}, step {self.step()}"
        saved = "checkpoint written" if self.store is not None else "no checkpointing configured"
        raise stopping.Stopped(
            self.stop.signum, f"Stopped by {self.stop.name} in {where} ({saved})"
        )


def undistributed_copy(model, family: str, hp: dict, steps_per_epoch: int) -> keras.Model:
    """The trained ``model`` (weights and optimizer state) on this process alone.

    A model replicated over several processes can be neither saved nor asked to predict by
    one of them (its arrays span devices of other processes): process 0 writes the outputs
    from this copy, which is what a single-process run would have saved.
    """
    values = checkpoint.capture(model, with_metrics=False)
    distribution.release()
    # The layers' names as in a single-process run (dense, not dense_2): Keras' name counters
    # start again. clear_session also resets the dtype policy, which the copy keeps.
    policy = keras.config.dtype_policy()
    keras.backend.clear_session(free_memory=False)
    keras.config.set_dtype_policy(policy)
    copy = models.build_model(family, hp)
    models.compile_model(copy, hp, steps_per_epoch)
    copy.optimizer.build(copy.trainable_variables)
    checkpoint.restore(copy.variables, values["model"], "model")
    checkpoint.restore(copy.optimizer.variables, values["optimizer"], "optimizer")
    return copy


def train(
    data: str | Path,
    family: str,
    hp: dict,
    *,
    param_hdf5: str | Path,
    model_keras: str | Path,
    history: str | Path,
    predictions_npz: str | Path | None = None,
    log: Callable[[str], None] = print,
    run: str = "default",
    checkpoints: str | Path | None = None,
    checkpoints_root: str | Path | None = None,
    every_epochs: int = 1,
    every_minutes: float = 10,
    callbacks: tuple[keras.callbacks.Callback, ...] = (),
    spread: distribution.Setup = distribution.NO_DISTRIBUTION,
    tensorboard: str | Path | None = None,
    stop_at_epoch: int | None = None,
) -> list[dict]:
    """Fit ``family`` with hyperparameters ``hp``; write weights, full model and history,
    and with ``predictions_npz`` the test images' class probabilities (mnistflow.predictions).

    With ``checkpoints`` (a directory of this run's own), the training state is saved after
    every ``every_epochs`` epochs and every ``every_minutes`` (0: never), and on the signals
    of ``stopping.SIGNALS``, after which ``stopping.Stopped`` is raised; the next call resumes
    from the newest checkpoint written for the same data, hyperparameters and code. The final
    state is saved too, marked complete, before the outputs are written, and kept: a call that
    finds it writes the outputs from it without training (the job was killed before Snakemake
    saw it succeed); ``checkpoint.remove_finished`` removes it. ``callbacks`` run first at
    each step.

    ``stop_at_epoch`` (successive halving's rungs, mnistflow.halving): train only up to that
    epoch of the ``hp["epochs"]`` whose schedule the run follows, save a checkpoint there and
    keep it (a later call resumes from it), and write only ``history``. Not part of the
    checkpoint's fingerprint: the stopped run is the full run's beginning.

    ``spread`` (distribution.setup): a data-parallel run, of which this is one process; each
    feeds its part of every batch, all take part in every step and decision, and only
    process 0 writes outputs and checkpoints. The outputs are those of a single process.

    ``tensorboard``: a folder of this run's own for TensorBoard event files, written while it
    trains, continued by a resumed run (mnistflow.summaries); process 0 writes them.
    """
    arrays = (*preprocess.load_split(data, "train"), *preprocess.load_split(data, "val"))
    model, steps_per_epoch = compiled_model(family, hp, arrays, spread, log)
    until = hp["epochs"] if stop_at_epoch is None else min(stop_at_epoch, hp["epochs"])
    if until < hp["epochs"] and checkpoints is None:
        raise ValueError("stop_at_epoch needs checkpoints: the next rung resumes from them")
    store, state = None, None
    if checkpoints is not None:
        run_fingerprint = checkpoint.fingerprint(family, hp, arrays, CODE)
        store = checkpoint.Store(checkpoints, run_fingerprint, log, root=checkpoints_root)
        state = store.load()
    if state is not None and until <= state.epoch and until < hp["epochs"]:
        log(f"{family}/{run} has trained {state.epoch} epochs: its first {until} are kept")
        if spread.writes:
            write_text(history, history_csv(state.rows[:until]))
        return state.rows[:until]
    resume(model, state, f"{family}/{run}", log)
    feed = Feed(model, arrays, hp["batch_size"], spread)
    events, live = None, []
    if tensorboard is not None and spread.writes:
        rates = summaries.learning_rates(models.learning_rate(hp, steps_per_epoch), steps_per_epoch)
        first_epoch, rows = (state.epoch, state.rows) if state is not None else (0, [])
        events = summaries.start(tensorboard, first_epoch, rows, rates)
        live = [summaries.Live(events, rates)]

    epoch_log = EpochLog(hp["epochs"], log, resumed=state)
    with stopping.on_signals() as stop:
        trainer = _Trainer(
            model,
            store,
            stop,
            epoch_log,
            steps_per_epoch=steps_per_epoch,
            every_minutes=every_minutes,
            spread=spread,
        )
        # First: a loss gone NaN stops before any checkpoint or output (mnistflow.numerics).
        first = [numerics.StopOnNonFinite(family, run, hp), *callbacks]
        # With weight averaging, validate the averaged weights: those are what fit() leaves
        # in the model at its end, and so what param.hdf5 and model.keras hold.
        averaging = [AveragedValidation()] if model.optimizer.use_ema else []
        fit_epochs(
            trainer,
            feed,
            hp,
            state,
            [*first, *averaging, Checkpointing(trainer), epoch_log, *live],
            every_epochs=every_epochs,
            until=until,
        )
    if until < hp["epochs"]:
        if events is not None:
            events.close()  # the next rung's events continue these curves
        if spread.writes:
            write_text(history, history_csv(epoch_log.rows))
        return epoch_log.rows  # the checkpoint stays: the next rung resumes from it

    if spread.active:
        if not spread.writes:
            return epoch_log.rows  # process 0 writes the outputs and the final checkpoint
        model = undistributed_copy(model, family, hp, steps_per_epoch)
    numerics.check_weights(model, family, run, hp)
    if store is not None and not (state is not None and state.complete):
        # Before the outputs, from the weights they hold (with averaging, those fit() swapped
        # in at its end): a kill from here on loses no training.
        final = checkpoint.State(
            epoch=hp["epochs"],
            batch=0,
            step=trainer.step(),
            rows=epoch_log.rows,
            lines=epoch_log.lines,
            complete=True,
            variables=checkpoint.capture(model, with_metrics=False),
        )
        store.save(final)
    test = write_outputs(
        model, data, epoch_log.rows, param_hdf5, model_keras, history, predictions_npz
    )
    if events is not None:
        if test is not None:
            summaries.write_test(events, hp["epochs"], *test)
        events.close()
    return epoch_log.rows


def compiled_model(family: str, hp: dict, arrays: tuple, spread, log) -> tuple[keras.Model, int]:
    """The model of ``family``, compiled for this run's steps per epoch (its schedule's
    length), and those steps."""
    train_y, val_y = arrays[1], arrays[3]
    batch_size = hp["batch_size"]
    if spread.active:
        log(f"distribution: {spread.describe()}")
        spread.check_batch_size(batch_size)
    usable = spread.usable(len(train_y), batch_size)
    steps_per_epoch = math.ceil(usable / batch_size)
    model = models.build_model(family, hp)
    models.compile_model(model, hp, steps_per_epoch)
    log(f"Training {family} on {len(train_y)} images, validating on {len(val_y)}: {hp}")
    if usable < len(train_y):
        log(
            f"Each epoch trains {usable} of them: its last batch is cut to a multiple of "
            f"the {spread.replicas} devices"
        )
    if model.optimizer.use_ema:
        log(f"Averaging the weights with momentum {model.optimizer.ema_momentum:.4g}")
    model.optimizer.build(model.trainable_variables)
    return model, steps_per_epoch


def resume(model: keras.Model, state: checkpoint.State | None, name: str, log) -> None:
    """Put a checkpoint's weights and optimizer state back into ``model`` (nothing without one);
    a complete one's are those the finished run's outputs were written from."""
    if state is None:
        return
    checkpoint.restore(model.variables, state.variables["model"], "model")
    checkpoint.restore(model.optimizer.variables, state.variables["optimizer"], "optimizer")
    written = state.written.replace("T", " ")
    if state.complete:  # fit_epochs then has no epoch left to train
        log(
            f"{name} had finished its {state.epoch} epochs: writing its outputs from the final "
            f"checkpoint (written {written})"
        )
    else:
        log(
            f"Resuming {name} from epoch {state.epoch + 1}, step {state.step} "
            f"(checkpoint written {written})"
        )
    for line in state.lines:  # so that the log shows every epoch once
        log(line)


class Feed:
    """The training and validation data as fit() takes them, and each epoch's batches."""

    def __init__(self, model: keras.Model, arrays: tuple, batch_size: int, spread):
        train_x, train_y, val_x, val_y = arrays
        self.spread, self.count = spread, len(train_y)
        self.batch_size = self.fit_batch_size = batch_size
        if spread.active:
            # NumPy, each process its part of each batch: Keras assembles the global batch.
            self.x, self.y = models.reshape_for(model, train_x), train_y
            part = spread.shard(np.arange(len(val_y)), batch_size)
            self.validation = (models.reshape_for(model, val_x)[part], val_y[part])
            self.fit_batch_size = spread.local_batch_size(batch_size)
        else:
            # The data go to the backend (a GPU's memory, where there is one) once: fit()
            # converts NumPy input on every call, which with one call per epoch cost
            # TensorFlow about 0.2 s per epoch (softmax on MNIST, 20 epochs: 12.8 s -> 8.5 s).
            to_backend = keras.ops.convert_to_tensor
            self.x, self.y = to_backend(models.reshape_for(model, train_x)), to_backend(train_y)
            self.validation = (
                to_backend(models.reshape_for(model, val_x)),
                to_backend(val_y),
            )
        self.batched = not spread.active and keras.backend.backend() == "tensorflow"
        self.validation_data = self.validation
        if self.batched:
            self.validation_data = batches(self.validation, batch_size)

    def epoch(self, seed: int, epoch: int, first_batch: int = 0) -> dict:
        """fit()'s data arguments for ``epoch``: its images and labels in its order, from
        ``first_batch`` on."""
        order = epoch_order(seed, epoch, self.count)[first_batch * self.batch_size :]
        if self.spread.active:
            part = self.spread.shard(order, self.batch_size)
            x, y = self.x[part], self.y[part]
        else:
            x, y = keras.ops.take(self.x, order, axis=0), keras.ops.take(self.y, order, axis=0)
        if self.batched:
            return {"x": batches((x, y), self.batch_size)}
        return {"x": x, "y": y, "batch_size": self.fit_batch_size}


def batches(tensors, batch_size: int):
    """TensorFlow tensors as a tf.data pipeline of batches, in their order.

    Given tensors, fit(), evaluate() and predict() build and trace a slicing pipeline of
    their own at every call (Keras' array adapter); with one fit() call per epoch that cost
    more than the softmax's epochs themselves (6 epochs: 10.6 s against 6.6 s, the same
    weights; docs/benchmarks.md). A tf.data pipeline they take as it is.
    """
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(tensors).batch(batch_size)


def fit_epochs(
    trainer: _Trainer, feed: Feed, hp: dict, state, callbacks, *, every_epochs: int, until: int
):
    """One fit() call per epoch, from the checkpoint's epoch and batch on, up to epoch
    ``until``; saves every ``every_epochs`` epochs and at ``until`` before the last, and
    stops (``stopping.Stopped``) when asked between two."""
    model, epochs = trainer.model, hp["epochs"]
    if state is not None and state.batch > 0:
        # Keras creates the metrics' variables on the first traced step (TensorFlow) or in
        # fit(); evaluating one image creates them now, without touching the weights (one
        # per device when distributed). Checkpointing puts the epoch's sums back.
        few = trainer.spread.devices
        images, labels = feed.validation
        model.evaluate(images[:few], labels[:few], batch_size=few, verbose=0)
        trainer.resumed_metrics = state.variables["metrics"]
    for epoch in range(state.epoch if state else 0, until):
        # A resumed epoch trains its remaining batches.
        trainer.epoch = epoch
        trainer.first_batch = state.batch if state is not None and epoch == state.epoch else 0
        data = feed.epoch(hp.get("seed", 0), epoch, trainer.first_batch)
        with _average_kept_apart(model.optimizer, last_epoch=epoch == epochs - 1):
            model.fit(
                **data,
                initial_epoch=epoch,
                epochs=epoch + 1,
                shuffle=False,
                validation_data=feed.validation_data,
                callbacks=callbacks,
                verbose=0,
            )
        trainer.batch = trainer.steps_per_epoch
        if epoch < epochs - 1:
            if trainer.poll()[0]:
                trainer.save(mid_epoch=False)
                trainer.stopped()
            every = every_epochs and (epoch + 1) % every_epochs == 0
            if trainer.store is not None and (every or epoch + 1 == until):
                trainer.save(mid_epoch=False)


def write_outputs(model, data, rows, param_hdf5, model_keras, history, predictions_npz):
    """param.hdf5, model.keras (both loading with plain Keras), history.csv and, with
    ``predictions_npz``, the test images' class probabilities; returns those and the test
    labels (None without ``predictions_npz``)."""
    saved = models.portable(model)  # loads with plain Keras
    save_param_hdf5(saved, param_hdf5)
    with atomic_path(model_keras) as tmp:
        saved.save(tmp)
    write_text(history, history_csv(rows))
    if predictions_npz is None:
        return None
    # Predicted here, with the model in memory, so that the evaluate step needs no Keras.
    test_x, test_y = preprocess.load_split(data, "test")
    test_x = keras.ops.convert_to_tensor(models.reshape_for(model, test_x))
    if keras.backend.backend() == "tensorflow":
        probabilities = model.predict(batches(test_x, 1000), verbose=0)
    else:
        probabilities = model.predict(test_x, batch_size=1000, verbose=0)
    used = {}
    if model.optimizer.use_ema:
        used["ema_momentum"] = round(float(model.optimizer.ema_momentum), 4)
    predictions.save(predictions_npz, probabilities, backend=keras.backend.backend(), training=used)
    return keras.ops.convert_to_numpy(probabilities), test_y
