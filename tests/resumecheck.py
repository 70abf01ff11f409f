"""Checks shared by the resume tests: a resumed run looks exactly like an uninterrupted one."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np


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
