"""End to end: a training killed mid-run resumes on the next `snakemake`, bit for bit.

The real snakemake CLI on a scratch copy of the workflow and the bundled sample. One
uninterrupted run is the reference; the interrupted runs must end with exactly its
param.hdf5, and their train.log and history.csv must show every epoch once.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import snakemake
from mnistflow import checkpoint
from resumecheck import (
    CHECKPOINTS,
    RUN,
    SHORT_CONFIG,
    SHORT_EPOCHS,
    TARGET,
    TRAIN_LOG,
    assert_resumed_as_uninterrupted,
    checkpointed,
    read,
    short_workdir,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
EPOCHS = SHORT_EPOCHS  # the short set-up of tests/resumecheck.py, and its shared reference


def start(work: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", TARGET],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as a terminal or a batch job gives it
    )


def wait_until_checkpointed(work: Path, process: subprocess.Popen) -> None:
    """Until epoch 3 is being trained and a checkpoint exists."""
    deadline = time.time() + 300
    while not checkpointed(work):
        assert process.poll() is None and time.time() < deadline, "training did not start"
        time.sleep(0.2)


def training_pid(session: int) -> int:
    """The process running train.py in snakemake's session."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) != session:
                    continue
                if b"train.py" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except (OSError, ProcessLookupError):
                continue
    raise AssertionError("no training process found")


def checkpoints(work: Path) -> set[str]:
    return {path.name for path in (work / CHECKPOINTS).glob("checkpoint-*.npz")}


def wait_until_resumed_and_checkpointed(work: Path, process: subprocess.Popen, saved: set[str]):
    """Until this attempt (its own train.log: the log is rewritten per attempt) has resumed and
    saved a checkpoint of its own. Returns its log so far."""
    deadline = time.time() + 300
    while True:
        log = read(work / TRAIN_LOG)
        if "Resuming cnn/default from epoch" in log and "Stopped by" not in log:
            if checkpoints(work) - saved:
                return log
        assert process.poll() is None and time.time() < deadline, log
        time.sleep(0.2)


def stop(process: subprocess.Popen, send, timeout: float) -> int:
    try:
        send()
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_sigterm_then_ctrl_c_then_sigkill_and_each_time_the_same_command_resumes(
    tmp_path, short_reference
):
    """Three interruptions of one training, each resumed by the command that was interrupted:
    SIGTERM to the training (a scheduler's warning: it saves and stops), Ctrl-C in a terminal
    (SIGINT to the whole foreground process group) and SIGKILL of the whole run (no warning:
    Snakemake's lock remains, the one extra step). It ends with the uninterrupted run's weights,
    every epoch logged once. One run for the three (each after a checkpoint of its own), not
    three runs from scratch."""
    work = short_workdir(tmp_path / "work")
    process = start(work)
    wait_until_checkpointed(work, process)
    code = stop(process, lambda: os.kill(training_pid(process.pid), signal.SIGTERM), 120)
    assert code != 0, "the job failed, so snakemake failed"
    stopped = read(work / TRAIN_LOG)
    assert re.search(
        r"^Stopped by SIGTERM in epoch \d+, step \d+ \(checkpoint written\)", stopped, re.M
    ), stopped
    assert not (work / TARGET).exists()

    saved = checkpoints(work)
    process = start(work)  # the same command, nothing else
    wait_until_resumed_and_checkpointed(work, process, saved)
    assert stop(process, lambda: os.killpg(process.pid, signal.SIGINT), 120) != 0
    stopped = read(work / TRAIN_LOG)
    assert re.search(r"^Resuming cnn/default from epoch \d+, step \d+ ", stopped, re.M), stopped
    assert re.search(
        r"^Stopped by SIGINT in epoch \d+, step \d+ \(checkpoint written\)", stopped, re.M
    ), stopped
    assert not (work / TARGET).exists()

    saved = checkpoints(work)
    process = start(work)  # Snakemake exited cleanly: no --unlock, the same command
    wait_until_resumed_and_checkpointed(work, process, saved)
    stop(process, lambda: os.killpg(process.pid, signal.SIGKILL), 30)  # snakemake and training
    assert not (work / TARGET).exists()
    # Snakemake was killed too, so its lock on the directory remains: the one extra step.
    snakemake(work, "--unlock")
    snakemake(work, TARGET)  # no --rerun-incomplete needed: the outputs never existed
    assert_resumed_as_uninterrupted(work, short_reference.result(), RUN, EPOCHS)


# The JAX backend: its checkpoint holds JAX arrays and its steps are XLA-compiled, so its
# resume is proved on its own, against its own uninterrupted run.
JAX_CONFIG = {**SHORT_CONFIG, "compute": {"backend": "jax"}}


@pytest.fixture(scope="module")
def jax_reference(tmp_path_factory) -> Iterator[Future[Path]]:
    """Run while the test's own run goes (a future, as resumecheck.short_reference)."""

    def build() -> Path:
        work = short_workdir(tmp_path_factory.mktemp("jax-reference"), JAX_CONFIG)
        snakemake(work, TARGET)
        with h5py.File(work / TARGET) as weights:  # Keras records the backend that saved them
            assert weights.attrs["backend"] == "jax"
        return work

    tmp_path_factory.getbasetemp()  # made here: its first call (mkdir) races the test's tmp_path
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(build)


def test_jax_backend_sigkill_then_the_same_command_resumes(tmp_path, jax_reference):
    work = short_workdir(tmp_path / "work", JAX_CONFIG)
    process = start(work)
    try:
        wait_until_checkpointed(work, process)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert not (work / TARGET).exists()
    snakemake(work, "--unlock")
    snakemake(work, TARGET)
    assert_resumed_as_uninterrupted(work, jax_reference.result(), RUN, EPOCHS)


JAX = {"compute": {"backend": "jax"}}
# Only process 0 writes the outputs and the final checkpoint; every process reads it.
TWO_PROCESSES = {**JAX, "distribution": {"mode": "processes", "processes": 2}}


@pytest.mark.parametrize(
    "compute", [{}, JAX, TWO_PROCESSES], ids=["tensorflow", "jax", "2-processes"]
)
def test_a_job_killed_after_its_training_writes_its_outputs_from_the_final_checkpoint(
    tmp_path, compute
):
    """A job killed between the end of its training and Snakemake seeing it succeed (at a time
    limit, while the job's Snakemake stores its outputs) leaves the training's final checkpoint,
    and Snakemake removes the job's outputs. The same command then writes them from it, the same
    files, without training; the clean-up on success (onsuccess) then removes the checkpoint.

    The first run goes without Snakemake's hooks (--no-hooks), so that its final checkpoint stays
    as after such a kill; its outputs are then removed as Snakemake removes a failed job's.
    """
    hp = {**SHORT_CONFIG["hyperparameters"]["cnn"], "epochs": 3}
    config = {**SHORT_CONFIG, "hyperparameters": {"cnn": hp}, **compute}
    del config["checkpoint"]  # the defaults
    work = short_workdir(tmp_path / "work", config)
    snakemake(work, "--no-hooks", TARGET)
    outputs, first = work / "results" / RUN, tmp_path / "first" / "results" / RUN
    shutil.copytree(outputs, first)
    first_log = read(work / TRAIN_LOG)
    assert checkpoint.is_complete(max((work / CHECKPOINTS).glob("checkpoint-*.npz")))
    for name in ("param.hdf5", "model.keras", "history.csv", "predictions.npz"):
        (outputs / name).unlink()
    if not compute:  # the clean-up reads only files, the same whatever the backend: once
        # Another run that succeeds (its onsuccess clean-up runs) keeps it: outputs are missing.
        snakemake(work, "results/mnist-sample/data.h5", "--forcerun", "preprocess")
        assert checkpoint.is_complete(max((work / CHECKPOINTS).glob("checkpoint-*.npz")))

    snakemake(work, TARGET)
    log = read(work / TRAIN_LOG)
    assert re.search(
        r"^cnn/default had finished its 3 epochs: writing its outputs from the final checkpoint "
        r"\(written ",
        log,
        re.M,
    ), log
    assert "Resuming" not in log
    assert ("distribution: 2 processes x 1 device (jax, cpu)" in log) == ("distribution" in compute)
    # No epoch trained: the finished run's epoch lines and history, their seconds too.
    epochs = re.findall(r"^Epoch \d+/3 - .*$", log, re.M)
    assert epochs == re.findall(r"^Epoch \d+/3 - .*$", first_log, re.M) and len(epochs) == 3
    assert (outputs / "history.csv").read_text() == (first / "history.csv").read_text()
    with np.load(outputs / "predictions.npz") as now, np.load(first / "predictions.npz") as then:
        np.testing.assert_array_equal(now["probabilities"], then["probabilities"])
    # The first run's weights; every epoch logged once; the checkpoint removed once Snakemake saw
    # the job succeed; TensorBoard: each epoch once, and the test summary once (written again).
    assert_resumed_as_uninterrupted(work, tmp_path / "first", RUN, 3)
