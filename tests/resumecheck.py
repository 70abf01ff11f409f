"""Shared by the resume tests: a resumed run looks exactly like an uninterrupted one.

Also the set-up of tests/test_resume_{slurm,uge,pjm}.py: a train job killed at its time limit
is retried with more time and resumes, through the profiles, as users run them. The training
takes about twice the first attempt's limit (1 minute, the least Snakemake can ask for), so it
is killed mid-run; the retry asks for 2 minutes (runtime x attempt), resumes from the
checkpoint and must end with exactly the weights of an uninterrupted local run. The
scheduler's own records (sacct, qacct, pjstat -H) must show every attempt. One file per
scheduler, so that pytest-xdist runs them side by side.
"""

from __future__ import annotations

import fcntl
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import copy_workflow, snakemake

# ~0.4 s each on one core: longer than the second attempt's 2 minutes too (SLURM enforces a
# limit up to 30 s late), so that even when a busy machine keeps the first attempt from saving
# any checkpoint, the training cannot finish from scratch and must resume (300 epochs once
# did, in CI: attempt 1 saved nothing, attempt 2 trained all 300 in 125 s).
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


@pytest.fixture(scope="module")
def resume_reference(tmp_path_factory, request) -> Path:
    """The same training, uninterrupted, run locally: once for all pytest-xdist workers."""
    base = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker: share with the others
        base = base.parent
    with open(base / "resume-reference.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        work = base / "resume-reference" / "pipeline"
        if not (work / TARGET).exists():
            work = pipeline(base / "resume-reference")
            snakemake(work, TARGET, "--configfile", "config/resume-test.yaml", timeout=900)
    return work


def assert_attempts(attempts: list[tuple[bool, str]]) -> None:
    """(succeeded, record) per train attempt: killed ones, then one that succeeded."""
    assert len(attempts) >= 2, attempts
    assert [ok for ok, _ in attempts] == [False] * (len(attempts) - 1) + [True], attempts


def assert_resumed_as_uninterrupted(work: Path, reference: Path, run: str, epochs: int) -> None:
    """``work``'s run resumed once, logs every epoch once, and has ``reference``'s weights."""
    family = run.split("/")[1]
    log = (work / "logs" / run / "train.log").read_text()
    resumed = re.findall(rf"^Resuming {family}/default from epoch \d+, step \d+ ", log, re.M)
    assert len(resumed) == 1, log
    logged = re.findall(rf"^Epoch (\d+)/{epochs} - ", log, re.M)
    assert logged == [str(e) for e in range(1, epochs + 1)], log
    history = (work / "results" / run / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == logged
    assert_same_weights(
        work / "results" / run / "param.hdf5", reference / "results" / run / "param.hdf5"
    )
    assert not (work / ".checkpoints").exists(), "checkpoints are removed after success"


def assert_same_weights(mine: Path, theirs: Path) -> None:
    with h5py.File(mine) as a, h5py.File(theirs) as b:
        names = []
        b.visit(names.append)
        datasets = [n for n in names if isinstance(b[n], h5py.Dataset)]
        assert datasets
        for name in datasets:
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
