"""Checkpoints and resume, in-process on small synthetic data (no Snakemake).

A real SIGTERM (sent by the process to itself at a chosen step) stops a training; the
next call resumes it from its checkpoint and must end with exactly the weights, history
and log of a run that was never interrupted.
"""

from __future__ import annotations

import os
import signal

import h5py
import numpy as np
import pytest

from conftest import synthetic_digits, write_idx_gz
from mnistflow import checkpoint, preprocess, stopping
from mnistflow.datasets import IDX_FILENAMES

# 500 training images in batches of 4: 125 batches, so an epoch is 4 fit() executions of
# up to 32 batches and a stop can land mid-epoch.
BASE = {"epochs": 2, "batch_size": 4, "learning_rate": 0.003, "schedule": "cosine", "seed": 3}
HP = {
    "softmax": {**BASE, "optimizer": "rmsprop"},
    "mlp": {**BASE, "optimizer": "adam", "hidden_units": 16, "dropout": 0.3},
    "cnn": {**BASE, "optimizer": "adam", "filters": [4, 8, 8], "dropout": 0.3},
}
STEPS_PER_EPOCH = 125
MID_SECOND_EPOCH = 150  # the stop lands at the end of the execution that passes it: 157


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data")
    write_idx_gz(tmp, *synthetic_digits(600, seed=1), prefix="train")
    write_idx_gz(tmp, *synthetic_digits(200, seed=2), prefix="t10k")
    raw = {role: tmp / name for role, name in IDX_FILENAMES.items()}
    preprocess.preprocess(raw, tmp / "data.h5", dataset="synthetic", validation_size=100, seed=0)
    return tmp / "data.h5"


def sigterm_at(step: int):
    """A callback that sends this process a real SIGTERM once training passes ``step``."""
    import keras

    class SigtermAt(keras.callbacks.Callback):
        sent = False

        def on_train_batch_end(self, batch, logs=None):
            if not self.sent and int(self.model.optimizer.iterations.numpy()) >= step:
                self.sent = True
                os.kill(os.getpid(), signal.SIGTERM)

    return SigtermAt()


def train(data, family, hp, out, checkpoints=None, stop_at=None, callbacks=(), **options):
    """One training as the workflow runs it (seeded, deterministic ops); returns rows, log."""
    import keras

    from mnistflow import training

    keras.utils.set_random_seed(hp["seed"])  # as runtime.configure does in a fresh process
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    lines = []
    out.mkdir(parents=True, exist_ok=True)
    rows = training.train(
        data,
        family,
        hp,
        param_hdf5=out / "param.hdf5",
        model_keras=out / "model.keras",
        history=out / "history.csv",
        log=lines.append,
        checkpoints=checkpoints,
        callbacks=(*callbacks, *((sigterm_at(stop_at),) if stop_at else ())),
        **options,
    )
    return rows, lines


def weights(path) -> list[np.ndarray]:
    """In layer order (layer names differ between models built in one process)."""
    with h5py.File(path) as h5:
        return [
            h5[layer][name][()]
            for layer in h5.attrs["layer_names"]
            for name in h5[layer].attrs["weight_names"]
        ]


def assert_same_weights(a, b) -> None:
    first, second = weights(a), weights(b)
    assert len(first) > 0 and len(first) == len(second)
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def epoch_lines(lines):
    return [line.split(" - ", 2)[::2] for line in lines if line.startswith("Epoch ")]


_references: dict = {}


def reference(data, family, hp, tmp_path_factory):
    """An uninterrupted run (checkpointing on: it must not change the result), once per hp."""
    key = (family, repr(sorted(hp.items())))
    if key not in _references:
        out = tmp_path_factory.mktemp(f"reference-{family}")
        rows, lines = train(data, family, hp, out, checkpoints=out / "ckpt")
        assert_final(out / "ckpt")
        _references[key] = out, rows, lines
    return _references[key]


def stop_then_resume(data, family, hp, out, stop_at, **options):
    checkpoints = out / "ckpt"
    with pytest.raises(stopping.Stopped, match="Stopped by SIGTERM") as stopped:
        train(data, family, hp, out, checkpoints, stop_at=stop_at, **options)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert not (out / "param.hdf5").exists()
    saved = sorted(p.name for p in checkpoints.iterdir())
    rows, lines = train(data, family, hp, out, checkpoints, **options)
    assert_final(checkpoints)
    return saved, rows, lines


def assert_final(checkpoints) -> None:
    """A finished run keeps its final state, marked complete (the workflow's onsuccess removes
    it: checkpoint.remove_finished)."""
    newest = max(checkpoints.glob("checkpoint-*.npz"))
    assert checkpoint.is_complete(newest), newest


@pytest.mark.parametrize("averaging", [0.0, 0.9], ids=["plain", "averaged"])
@pytest.mark.parametrize("family", ["softmax", "mlp", "cnn"])
def test_resume_mid_epoch_is_bit_identical(data, tmp_path, tmp_path_factory, family, averaging):
    """Cosine schedule, dropout (random state), weight averaging: all continue exactly."""
    hp = {**HP[family], "ema_momentum": averaging}
    ref_out, ref_rows, ref_lines = reference(data, family, hp, tmp_path_factory)
    saved, rows, lines = stop_then_resume(data, family, hp, tmp_path, MID_SECOND_EPOCH)

    assert saved == ["checkpoint-000001.npz", "checkpoint-000002.npz"]  # epoch 1, the stop
    resumed = [line for line in lines if line.startswith("Resuming ")]
    assert len(resumed) == 1 and resumed[0].startswith(
        f"Resuming {family}/default from epoch 2, step 157 (checkpoint written "
    ), lines
    assert_same_weights(ref_out / "param.hdf5", tmp_path / "param.hdf5")
    assert without_seconds(rows) == without_seconds(ref_rows)  # training metrics too
    assert epoch_lines(lines) == epoch_lines(ref_lines)  # every epoch logged exactly once
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history] == ["epoch", "1", "2"]


def batch_counter():
    import keras

    class BatchCounter(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

    return BatchCounter()


@pytest.mark.parametrize("averaging", [0.0, 0.9], ids=["plain", "averaged"])
def test_a_finished_run_whose_outputs_are_gone_writes_them_from_its_final_checkpoint(
    data, tmp_path, averaging
):
    """A job killed after its training, before Snakemake saw it succeed: Snakemake removes its
    outputs, and the retry writes the same ones again without training. With weight averaging
    the final state holds the averaged weights, which fit() swaps in only at its very end."""
    hp = {**HP["cnn"], "ema_momentum": averaging}
    checkpoints, first, again = tmp_path / "ckpt", tmp_path / "first", tmp_path / "again"
    rows, lines = train(
        data, "cnn", hp, first, checkpoints, predictions_npz=first / "predictions.npz"
    )
    counter = batch_counter()
    # `again` holds none of the outputs, as Snakemake leaves a failed job's
    rows_again, lines_again = train(
        data,
        "cnn",
        hp,
        again,
        checkpoints,
        callbacks=(counter,),
        predictions_npz=again / "predictions.npz",
    )
    assert counter.batches == 0, "no batch trained again"
    finished = [line for line in lines_again if "final checkpoint" in line]
    assert len(finished) == 1 and finished[0].startswith(
        "cnn/default had finished its 2 epochs: writing its outputs from the final checkpoint "
        "(written "
    ), lines_again
    assert not [line for line in lines_again if line.startswith("Resuming ")]
    # every epoch logged once, as the finished run logged it (its seconds too)
    assert [line for line in lines_again if line.startswith("Epoch ")] == [
        line for line in lines if line.startswith("Epoch ")
    ]
    assert rows_again == rows
    assert (again / "history.csv").read_text() == (first / "history.csv").read_text()
    assert_same_weights(first / "param.hdf5", again / "param.hdf5")
    with np.load(first / "predictions.npz") as before, np.load(again / "predictions.npz") as now:
        np.testing.assert_array_equal(now["probabilities"], before["probabilities"])
        assert str(now["about"]) == str(before["about"])
    assert_final(checkpoints)  # still there for a further retry


def test_remove_finished_clears_only_complete_runs_whose_outputs_exist(tmp_path):
    root = tmp_path / "ckpt"
    variables = {"model": [np.ones(3, np.float32)], "optimizer": [np.zeros(1, np.int64)]}

    def save(run: str, complete: bool) -> checkpoint.Store:
        store = checkpoint.Store(root / "mnist" / "cnn" / run, {"data": "x"}, print, root=root)
        store.save(checkpoint.State(2, 0, 250, complete=complete, variables=variables))
        return store

    save("done", complete=True)
    save("outputs-gone", complete=True)  # killed before Snakemake saw it succeed
    save("rung", complete=False)  # a successive-halving rung, or a training to resume
    torn = save("torn", complete=True).files()[0]
    torn.write_bytes(torn.read_bytes()[:100])
    (root / "notes.txt").write_text("the user's own file\n")

    def outputs_exist(run):
        return run.name != "outputs-gone"

    cleared = checkpoint.remove_finished(root, outputs_exist)
    assert cleared == [root / "mnist" / "cnn" / "done"]
    assert not cleared[0].exists()
    left = sorted(p.parent.name for p in root.glob("**/checkpoint-*.npz"))
    assert left == ["outputs-gone", "rung", "torn"]
    assert (root / "notes.txt").exists()
    assert checkpoint.remove_finished(tmp_path / "none", outputs_exist) == []


def test_a_torn_newest_checkpoint_falls_back_to_the_previous_one(data, tmp_path, tmp_path_factory):
    hp = {**HP["mlp"], "ema_momentum": 0.9}
    ref_out, _, _ = reference(data, "mlp", hp, tmp_path_factory)
    checkpoints = tmp_path / "ckpt"
    with pytest.raises(stopping.Stopped):
        train(data, "mlp", hp, tmp_path, checkpoints, stop_at=MID_SECOND_EPOCH)
    newest = checkpoints / "checkpoint-000002.npz"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a torn write
    _, lines = train(data, "mlp", hp, tmp_path, checkpoints)
    log = "\n".join(lines)
    assert f"Ignoring checkpoint {newest}: unreadable" in log
    assert f"Resuming mlp/default from epoch 2, step {STEPS_PER_EPOCH} " in log
    assert_same_weights(ref_out / "param.hdf5", tmp_path / "param.hdf5")


def test_a_checkpoint_of_other_hyperparameters_is_ignored_with_the_reason(data, tmp_path):
    hp = {**HP["softmax"], "epochs": 3}
    checkpoints = tmp_path / "ckpt"
    with pytest.raises(stopping.Stopped):
        train(data, "softmax", hp, tmp_path, checkpoints, stop_at=MID_SECOND_EPOCH)
    changed = {**hp, "learning_rate": 0.001}
    rows, lines = train(data, "softmax", changed, tmp_path, checkpoints)
    log = "\n".join(lines)
    assert "written for a different run: its hyperparameters differ(s)" in log
    assert "Resuming" not in log
    assert [row["epoch"] for row in rows] == [1, 2, 3]  # trained from the start


def test_the_fingerprint_names_what_changed(tmp_path):
    code = tmp_path / "code.py"
    code.write_text("x = 1\n")
    arrays = [np.zeros(3, np.float32), np.arange(3)]
    base = checkpoint.fingerprint("mlp", {"epochs": 1}, arrays, [code])
    assert base == checkpoint.fingerprint("mlp", {"epochs": 1}, arrays, [code])
    changed_data = checkpoint.fingerprint("mlp", {"epochs": 1}, [arrays[0] + 1, arrays[1]], [code])
    assert [k for k in base if base[k] != changed_data[k]] == ["data"]
    code.write_text("x = 2\n")
    changed_code = checkpoint.fingerprint("mlp", {"epochs": 1}, arrays, [code])
    assert [k for k in base if base[k] != changed_code[k]] == ["code"]


def test_a_stop_without_checkpointing_still_stops_cleanly(data, tmp_path):
    with pytest.raises(stopping.Stopped, match=r"SIGTERM in epoch 2.*no checkpointing"):
        train(data, "softmax", HP["softmax"], tmp_path, stop_at=MID_SECOND_EPOCH)
    assert not list(tmp_path.iterdir()), "nothing half-written"


@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1", "SIGUSR2", "SIGXCPU", "SIGINT"])
def test_each_warning_signal_requests_a_stop_and_the_handlers_are_restored(name):
    signum = getattr(signal, name)
    before = signal.getsignal(signum)
    with stopping.on_signals() as stop:
        assert not stop
        os.kill(os.getpid(), signum)  # would end (or interrupt) the process without the handler
        assert stop and stop.name == name
    assert signal.getsignal(signum) == before
