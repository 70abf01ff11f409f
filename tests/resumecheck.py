"""Shared by the resume tests: a resumed run looks exactly like an uninterrupted one.

Two set-ups, both run through the profiles as users run them, and both ending with exactly
the weights of an uninterrupted local run (a reference built once for all pytest-xdist
workers, while the first test that needs it runs its own interrupted run: the two trainings
overlap, and a test waits for the reference only to compare) and with the scheduler's own
records (sacct, qstat -x, qacct, pjstat -H) of every attempt. One file per scheduler, so that
pytest-xdist runs them side by side.

- The long one (tests/test_resume_uge.py): a train job stopped at its time limit is retried
  with more time and resumes. The training takes several times the first attempt's limit
  (1 minute, the least Snakemake can ask for), so it is stopped mid-run; the retry asks for
  2 minutes (runtime x attempt) and resumes. 400 epochs, ~3 minutes of CPU per run: the price
  of a stop nobody times but the scheduler. No checkpoints but the one written on Grid
  Engine's -notify warning (SIGUSR2) at h_rt. One scheduler pays it: the others' time-limit
  stops are tested on the toy workflow (tests/test_scheduler_*.py).
- The short one (tests/test_resume_{slurm,pbs,pjm}.py, tests/test_resume_e2e.py): a 12-epoch
  training saves mid-epoch every 0.6 s; once it has saved, the test SIGKILLs it (no warning,
  as a node failure or the scheduler's SIGKILL after its grace time does); the scheduler
  records a failure, Snakemake retries it with more time (runtime x attempt) and it resumes.
  The kill comes only after a checkpoint exists, so the resume never depends on the
  machine's speed. How each scheduler stops a job at its time limit (SIGTERM, then SIGKILL)
  is tested on its own in tests/test_scheduler_*.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from conftest import copy_workflow, snakemake
from eventscheck import assert_events_match_history
from schedulers.schedtest import run_snakemake, start_snakemake, wait_for, wait_snakemake

# ~0.4 s each on one core: longer than the second attempt's 2 minutes too, so that even when a
# busy machine keeps the first attempt from saving any checkpoint, the training cannot finish
# from scratch and must resume (300 epochs once did, in CI, when SLURM ran this set-up:
# attempt 1 saved nothing, attempt 2 trained all 300 in 125 s).
EPOCHS = 400
CONFIG = f"""\
dataset: mnist-sample
models: [cnn]
hyperparameters: {{cnn: {{epochs: {EPOCHS}, batch_size: 16, filters: [4, 8, 8]}}}}
resources:
  train: {{threads: 1, mem_mb: 1500, runtime: 1}}
checkpoint: {{every_minutes: 0.1}}
"""
RUN = "mnist-sample/cnn/default"
TARGET = f"results/{RUN}/param.hdf5"
# More attempts (3, 4, ... minutes) in case the machine is busy (a load of 12 on the 2-core
# test machine took four); on an idle one two suffice.
RETRIES = [TARGET, "--retries", "5", "--configfile", "config/resume-test.yaml"]


def pipeline(path: Path) -> Path:
    work = copy_workflow(path / "pipeline")  # run_snakemake writes path / "snakemake.out"
    (work / "config" / "resume-test.yaml").write_text(CONFIG)
    return work


# The short training: 1,500 images in batches of 16, 94 batches, three fit() executions an
# epoch; a save every 0.6 s lands mid-epoch too. 10 minutes for attempt 1 (20 for attempt 2):
# only the test's kill stops it, however busy the machine.
SHORT_EPOCHS = 12
STEPS_PER_EPOCH = 94
SHORT_CONFIG = {
    "dataset": "mnist-sample",
    "models": ["cnn"],
    "hyperparameters": {"cnn": {"epochs": SHORT_EPOCHS, "batch_size": 16, "filters": [4, 8, 8]}},
    "resources": {"train": {"threads": 1, "mem_mb": 1500, "runtime": 10}},
    # Timed saves only (no epoch-end ones), so the newest checkpoint is mostly a mid-epoch one
    # and `checkpointed` sees one within a poll or two however fast the machine (with
    # epoch-end saves too, a quiet machine finished all 12 epochs before the test saw one).
    "checkpoint": {"every_minutes": 0.01, "every_epochs": 0},
}
TRAIN_LOG = f"logs/{RUN}/train.log"
CHECKPOINTS = f".checkpoints/{RUN}"
# One kill, so two attempts; a third in case something else fails (the records tell).
SHORT_RETRIES = [TARGET, "--retries", "2"]


def short_workdir(path: Path, config: dict = SHORT_CONFIG) -> Path:
    """A scratch workflow whose config/config.yaml is the short training's."""
    work = copy_workflow(path)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return work


def shared_run(tmp_path_factory, request, name: str, build: Callable[[Path], Path]) -> Path:
    """``build(folder)`` once for all pytest-xdist workers (the first one builds, under a lock)."""
    base = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker: share with the others
        base = base.parent
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = base / f"{name}.done"
        if not done.exists():
            work = build(base / name)
            done.write_text(str(work))
        return Path(done.read_text())


@pytest.fixture(scope="module")
def resume_reference(tmp_path_factory, request) -> Iterator[Future[Path]]:
    """The long training, uninterrupted, run locally while the test's own run goes: a future,
    its ``result()`` the folder (the first worker to ask builds it for all)."""

    def build(folder: Path) -> Path:
        work = pipeline(folder)
        # 1800 s: at a load of 20 on two cores (six helpers at once) 900 s was not enough.
        snakemake(work, TARGET, "--configfile", "config/resume-test.yaml", timeout=1800)
        return work

    tmp_path_factory.getbasetemp()  # made here: its first call (mkdir) races the test's tmp_path
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(shared_run, tmp_path_factory, request, "resume-reference", build)


@pytest.fixture(scope="module")
def short_reference(tmp_path_factory, request) -> Iterator[Future[Path]]:
    """The short training, uninterrupted, run locally while the test's own run goes (a future,
    as resume_reference)."""

    def build(folder: Path) -> Path:
        work = short_workdir(folder / "pipeline")
        snakemake(work, TARGET, timeout=900)
        return work

    tmp_path_factory.getbasetemp()  # made here: its first call (mkdir) races the test's tmp_path
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(shared_run, tmp_path_factory, request, "short-reference", build)


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def checkpointed(work: Path) -> bool:
    """Epoch 2 is done and the newest checkpoint is a mid-epoch one: a kill now lands mid-epoch
    (a save every 0.6 s) and must be resumed from."""
    if "Epoch 2/" not in read(work / TRAIN_LOG):
        return False
    try:
        newest = max((work / CHECKPOINTS).glob("checkpoint-*.npz"))
        with np.load(newest) as saved:
            header = json.loads(str(saved["header"]))
    except (ValueError, OSError, KeyError):  # none yet, or rotated away while read
        return False
    return header["step"] % STEPS_PER_EPOCH != 0


def training_pids(work: Path) -> list[int]:
    """The processes running train.py in ``work`` (a job on this host, wherever it came from):
    the training, and the shell that may have started it."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"train.py" in (entry / "cmdline").read_bytes() and os.readlink(
                    entry / "cwd"
                ) == str(work):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def kill_once_checkpointed(work: Path, *args: str, env: dict | None = None) -> str:
    """Run snakemake ``args`` in ``work``; SIGKILL the training once it has saved; the output.

    The scheduler's job fails, Snakemake retries it, and the retry resumes.
    """
    proc = start_snakemake(work, *args, env=env)
    wait_for(lambda: checkpointed(work), 900, "the first attempt's checkpoint", proc)
    for pid in wait_for(lambda: training_pids(work), 60, "the training process", proc):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return wait_snakemake(proc, timeout=1800)


def killed_and_resumed(
    tmp_path: Path,
    reference: Future[Path],
    attempts: Callable[[str, dict], list[tuple[bool, str, float]]],
    *args: str,
    env: dict | None = None,
) -> None:
    """The short set-up through a profile (``args``), the body of every scheduler's short test.

    ``attempts(output, env)`` reads the scheduler's own records of the train attempts, in
    submission order: (succeeded, the record, its time limit in minutes). Killed ones, then
    one that succeeded, with 10, 20 (, 30) minutes (runtime x attempt), and a run that
    resumed as if uninterrupted.
    """
    work = short_workdir(tmp_path / "pipeline")  # snakemake's output goes to tmp_path
    out = kill_once_checkpointed(work, *args, *SHORT_RETRIES, env=env)
    trains = attempts(out, env or {})
    assert_attempts([(ok, record) for ok, record, _ in trains])
    assert [limit for *_, limit in trains] == [10 * n for n in range(1, len(trains) + 1)], trains
    assert_resumed_as_uninterrupted(work, reference.result(), RUN, SHORT_EPOCHS)


def stopped_at_time_limits_and_resumed(
    tmp_path: Path,
    reference: Future[Path],
    attempts: Callable[[str], list[tuple[bool, str, float]]],
    *args: str,
    config: str = CONFIG,
    env: dict | None = None,
) -> list[tuple[bool, str, float]]:
    """The long set-up through a profile (``args``), the body of Grid Engine's test.

    ``attempts(output)`` reads the scheduler's own records of the train attempts, in
    submission order: (succeeded, the record, its time limit in minutes). Stopped ones, then
    one that succeeded, with 1, 2 (, 3 ...) minutes (runtime x attempt), and a run that
    resumed as if uninterrupted. Returns the attempts, for the scheduler's own checks.
    """
    work = pipeline(tmp_path)
    (work / "config" / "resume-test.yaml").write_text(config)
    out = run_snakemake(work, *args, "--latency-wait", "10", *RETRIES, env=env, timeout=1800)
    trains = attempts(out)
    assert_attempts([(ok, record) for ok, record, _ in trains])
    assert [limit for *_, limit in trains] == list(range(1, len(trains) + 1)), trains
    assert_resumed_as_uninterrupted(work, reference.result(), RUN, EPOCHS)
    return trains


def minutes(hms: str) -> float:
    """'00:10:00' or PJM's '0000:10:00' -> 10 ('00:10:30' -> 10.5)."""
    hours, mins, secs = hms.split(":")
    return int(hours) * 60 + int(mins) + int(secs) / 60


def assert_attempts(attempts: list[tuple[bool, str]]) -> None:
    """(succeeded, record) per train attempt: killed ones, then one that succeeded."""
    assert len(attempts) >= 2, attempts
    assert [ok for ok, _ in attempts] == [False] * (len(attempts) - 1) + [True], attempts


def assert_resumed_as_uninterrupted(work: Path, reference: Path, run: str, epochs: int) -> None:
    """``work``'s run resumed once, logs every epoch once, and has ``reference``'s weights."""
    family = run.split("/")[1]
    log = (work / "logs" / run / "train.log").read_text()
    # Resumed mid-run, or, where the attempt that finished the training was killed before the
    # scheduler saw it succeed (SLURM's job 254: trained at 1:57 of its 2:00), from the final
    # checkpoint: its log then holds the finished run's epoch lines.
    resumed = re.findall(
        rf"^(?:Resuming {family}/default from epoch \d+, step \d+ |{family}/default had "
        rf"finished its {epochs} epochs: writing its outputs from the final checkpoint )",
        log,
        re.M,
    )
    assert len(resumed) == 1, log
    logged = re.findall(rf"^Epoch (\d+)/{epochs} - ", log, re.M)
    assert logged == [str(e) for e in range(1, epochs + 1)], log
    history = (work / "results" / run / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == logged
    assert_same_weights(
        work / "results" / run / "param.hdf5", reference / "results" / run / "param.hdf5"
    )
    assert not (work / ".checkpoints").exists(), "checkpoints are removed after success"
    # TensorBoard's readers show the same curves: each epoch once, with history.csv's values.
    assert_events_match_history(
        work / "logs" / "tensorboard" / run, work / "results" / run / "history.csv"
    )


def assert_same_weights(mine: Path, theirs: Path) -> None:
    with h5py.File(mine) as a, h5py.File(theirs) as b:
        names = []
        b.visit(names.append)
        datasets = [n for n in names if isinstance(b[n], h5py.Dataset)]
        assert datasets
        for name in datasets:
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
