"""TensorBoard event files, written while a training runs (docs/tensorboard.md): read back with
TensorBoard's own readers they hold exactly history.csv's epochs and values, also after a kill
and a resume; the test accuracy and confusion matrix at the end; a switch turns them off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, copy_workflow, snakemake, synthetic_digits, write_idx_gz
from eventscheck import assert_events_match_history, event_files

pytest.importorskip("tensorboard")

RUN = "mnist-sample/softmax/default"
EPOCHS = 4
HP = {"epochs": EPOCHS, "schedule": "cosine", "learning_rate": 0.003}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("tensorboard") / "workflow")
    config = {
        "dataset": "mnist-sample",
        "models": ["softmax"],
        "hyperparameters": {"softmax": HP},
        "resources": {"train": {"threads": 1}, "evaluate": {"threads": 1}},
    }
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(work, "results/mnist-sample/report.html")
    return work


@pytest.mark.slow
def test_a_run_writes_its_history_and_test_results_as_events(trained):
    from tensorboard.backend.event_processing import event_accumulator

    from mnistflow import models

    folder = trained / "logs/tensorboard" / RUN
    scalars = assert_events_match_history(folder, trained / "results" / RUN / "history.csv")
    # The learning rate at each epoch's end: the cosine schedule at that step.
    steps_per_epoch = int(np.ceil(1500 / 128))  # the sample's training images, batch 128
    schedule = models.learning_rate({**HP, "batch_size": 128}, steps_per_epoch)
    expected = [float(np.float32(schedule(e * steps_per_epoch))) for e in range(1, EPOCHS + 1)]
    got = [value for _, value in scalars["train"]["epoch_learning_rate"]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[-1] < got[0]  # the schedule decays
    # The test accuracy is the evaluate step's.
    metrics = json.loads((trained / "results" / RUN / "metrics.json").read_text())
    assert scalars["test"]["epoch_accuracy"] == [
        (EPOCHS, float(np.float32(metrics["test_accuracy"])))
    ]
    images = event_accumulator.EventAccumulator(str(folder / "test"))
    images.Reload()
    (confusion,) = images.Images("confusion_matrix")
    assert confusion.step == EPOCHS and confusion.width > 400 and confusion.height > 400
    assert confusion.encoded_image_string.startswith(b"\x89PNG")
    # One file per part, none in results/: outside the outputs Snakemake manages.
    assert [p.parent.name for p in event_files(folder)] == ["test", "train", "validation"]
    assert not list((trained / "results").rglob("*tfevents*"))
    report = (trained / "results/mnist-sample/report.html").read_text()
    assert "tensorboard --logdir logs/tensorboard/mnist-sample" in report
    assert 'href="../../logs/tensorboard/mnist-sample/"' in report


@pytest.mark.slow
def test_the_switch_turns_them_off(trained):
    folder = trained / "logs/tensorboard" / RUN
    before = {p: p.stat().st_mtime_ns for p in event_files(folder)}
    snakemake(
        trained,
        f"results/{RUN}/history.csv",
        "--forcerun",
        "train",
        "--config",
        "tensorboard={enabled: false}",
    )
    assert "Epoch 4/4" in (trained / "logs" / RUN / "train.log").read_text()
    assert {p: p.stat().st_mtime_ns for p in event_files(folder)} == before


# --- a kill after epochs that no checkpoint holds ---------------------------------------------

KILLABLE = """
import json, os, signal, sys
from mnistflow import runtime
runtime.configure(1, seed=3)
import keras
from mnistflow import training

arguments, kill_epoch = json.loads(sys.argv[1]), int(sys.argv[2])

class KillMidEpoch(keras.callbacks.Callback):
    # SIGKILL, as a node failure: no handler runs, nothing is saved
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == kill_epoch and batch >= 40:
            os.kill(os.getpid(), signal.SIGKILL)

callbacks = (KillMidEpoch(),) if kill_epoch >= 0 else ()
training.train(**arguments, callbacks=callbacks)
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from mnistflow import preprocess
    from mnistflow.datasets import IDX_FILENAMES

    tmp = tmp_path_factory.mktemp("data")
    write_idx_gz(tmp, *synthetic_digits(600, seed=1), prefix="train")
    write_idx_gz(tmp, *synthetic_digits(200, seed=2), prefix="t10k")
    raw = {role: tmp / name for role, name in IDX_FILENAMES.items()}
    preprocess.preprocess(raw, tmp / "data.h5", dataset="synthetic", validation_size=100, seed=0)
    return tmp / "data.h5"


def run_training(arguments: dict, kill_epoch: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow" / "scripts")}
    return subprocess.run(
        [sys.executable, "-c", KILLABLE, json.dumps(arguments), str(kill_epoch)],
        env=env,
        capture_output=True,
        timeout=600,
    ).returncode


def raw_steps(folder: Path, part: str, tag: str) -> list[int]:
    """Every step written for ``tag``, in file order, before any reader's purge."""
    from tensorboard.backend.event_processing import event_file_loader

    steps = []
    for path in sorted((folder / part).glob("*tfevents*")):
        for event in event_file_loader.EventFileLoader(str(path)).Load():
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps


@pytest.mark.slow  # two trainings in fresh processes (about a minute)
def test_a_killed_training_resumes_the_same_curves_each_epoch_once(data, tmp_path):
    """Checkpoints after every 2nd epoch only; SIGKILL mid-epoch 4, after epoch 3's events were
    written but before any checkpoint held epoch 3: the resumed run trains epoch 3 again, and
    the readers show it once, with history.csv's values."""
    out, folder = tmp_path / "out", tmp_path / "tensorboard" / "run"
    arguments = {
        "data": str(data),
        "family": "mlp",
        "hp": {"epochs": 5, "batch_size": 8, "optimizer": "adam", "learning_rate": 0.003,
               "schedule": "cosine", "hidden_units": 16, "dropout": 0.3, "seed": 3},
        "param_hdf5": str(out / "param.hdf5"),
        "model_keras": str(out / "model.keras"),
        "history": str(out / "history.csv"),
        "predictions_npz": str(out / "predictions.npz"),
        "checkpoints": str(tmp_path / "checkpoints"),
        "every_epochs": 2,
        "every_minutes": 0,
        "tensorboard": str(folder),
    }  # fmt: skip
    out.mkdir()
    assert run_training(arguments, kill_epoch=3) == -9
    assert not (out / "history.csv").exists()
    assert raw_steps(folder, "train", "epoch_loss") == [1, 2, 3]  # epoch 3: after the checkpoint
    assert run_training(arguments, kill_epoch=-1) == 0
    # Epoch 3 is in the files twice (before the kill, and trained again) ...
    assert raw_steps(folder, "train", "epoch_loss") == [1, 2, 3, 3, 4, 5]
    # ... and TensorBoard's readers show each epoch once, with history.csv's values.
    scalars = assert_events_match_history(folder, out / "history.csv")
    assert len(event_files(folder)) == 5  # train and validation twice, test once
    # And the TensorBoard users start (its Rust data server where installed) shows the same.
    expected = scalars["train"]["epoch_loss"]
    assert serve_scalars(folder.parent, "run/train", "epoch_loss", expected) == expected


def serve_scalars(logdir: Path, run: str, tag: str, expected: list) -> list:
    """(step, value) of ``tag`` as a real `tensorboard --logdir` serves them, once it serves
    ``expected`` (it loads in the background) or after 4 minutes."""
    import socket
    import time
    import urllib.parse
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port),
         "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    query = urllib.parse.urlencode({"run": run, "tag": tag})
    url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}"
    served, deadline = None, time.time() + 240
    try:
        while served != expected and time.time() < deadline:
            assert server.poll() is None, "tensorboard ended"
            time.sleep(1)
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    served = [(step, value) for _, step, value in json.loads(response.read())]
            except OSError:
                continue  # not listening yet
        return served
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_fresh_start_replaces_an_earlier_trainings_files(tmp_path):
    from mnistflow import summaries

    rates = summaries.learning_rates(0.001, 10)
    row = {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.5, "val_accuracy": 0.4}
    for _ in range(2):
        events = summaries.start(tmp_path, 0, [], rates)
        events.scalars("train", 1, summaries.epoch_scalars(row, rates(0))["train"])
        events.close()
    assert len(event_files(tmp_path)) == 1
    # Resumed without the earlier files (TensorBoard turned on mid-run): the checkpoint's
    # history is written first.
    resumed = tmp_path / "resumed"
    rows = [{**row, "epoch": e} for e in (1, 2)]
    summaries.start(resumed, 2, rows, rates).close()
    from eventscheck import read_scalars

    assert [s for s, _ in read_scalars(resumed)["validation"]["epoch_loss"]] == [1, 2]


def test_a_test_summary_written_again_replaces_the_earlier_one(tmp_path):
    """A job killed after its outputs, before Snakemake saw it succeed: the retry writes them
    again from the final checkpoint (mnistflow.training), and the test summary once more."""
    from eventscheck import read_scalars
    from mnistflow import summaries

    rates = summaries.learning_rates(0.001, 10)
    labels = np.arange(10)
    for first_epoch, right in ((0, 10), (2, 9)):  # the finished attempt, then the retry
        events = summaries.start(tmp_path, first_epoch, [], rates)
        summaries.write_test(events, 2, np.eye(10)[(labels + (labels >= right)) % 10], labels)
        events.close()
    assert read_scalars(tmp_path)["test"]["epoch_accuracy"] == [(2, float(np.float32(0.9)))]
    assert len(event_files(tmp_path)) == 1
