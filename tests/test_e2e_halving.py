"""Successive halving through the real snakemake CLI on the bundled sample (about 3 minutes).

One study of 4 softmax settings, rungs of 1, 2 and 4 epochs, eta 2: 4 settings train 1 epoch,
the best 2 continue to 2 epochs, the best of those to 4 (the fewest settings for which every
rung drops some and rung 2 trains two). The run is SIGKILLed (snakemake and its trainings,
as a lost node would) while rung 2 trains; the same command then finishes it. A plain study
of the winning setting, trained once to 4 epochs, is the reference for its weights.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from conftest import copy_workflow, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RESULTS = Path("results") / "mnist-sample"
LEARNING_RATES = [0.0003, 0.003, 0.01, 0.1]
RUNGS = [1, 2, 4]
BASE = {
    "dataset": "mnist-sample",
    "models": ["softmax"],
    "hyperparameters": {"softmax": {"batch_size": 64, "schedule": "cosine"}},
}
STUDY = {
    **BASE,
    "sweep": {
        "threads": 1,
        "families": {
            "softmax": {
                "grid": {"learning_rate": LEARNING_RATES},
                "halving": {"rungs": RUNGS, "eta": 2},
            }
        },
    },
}


def run_dir(setting: str) -> Path:
    return RESULTS / "softmax" / f"{setting}+seed=0"


def rung_val_accuracy(work: Path, setting: str, epochs: int) -> float:
    with open(work / run_dir(setting) / f"rung-{epochs}.csv", newline="") as handle:
        return float(list(csv.DictReader(handle))[epochs - 1]["val_accuracy"])


def settings() -> list[str]:
    return [f"learning_rate={rate}" for rate in LEARNING_RATES]


@pytest.fixture(scope="module")
def killed_and_rerun(tmp_path_factory) -> dict:
    """The study, killed during rung 2, then the same command again."""
    work = copy_workflow(tmp_path_factory.mktemp("halving") / "work")
    (work / "study.yaml").write_text(yaml.safe_dump(STUDY))
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "study.yaml"]
    process = subprocess.Popen(
        command, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 600
        while not list((work / "logs").glob("mnist-sample/softmax/*/train_rung-2.log")):
            assert process.poll() is None, "snakemake ended before rung 2"
            assert time.time() < deadline, "rung 2 never started"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    rung1 = {s: (work / run_dir(s) / "rung-1.csv").stat().st_mtime_ns for s in settings()}
    assert not (work / RESULTS / "sweep" / "summary.txt").exists()
    snakemake(work, "--unlock")
    rerun = snakemake(work, "--configfile", "study.yaml")
    return {"work": work, "rung1_mtimes": rung1, "rerun": rerun.stdout + rerun.stderr}


def test_the_rerun_after_a_kill_in_rung_2_does_not_retrain_rung_1(killed_and_rerun):
    work, out = killed_and_rerun["work"], killed_and_rerun["rerun"]
    assert not re.search(r"output: \S*rung-1\.csv", out), out[-3000:]
    now = {s: (work / run_dir(s) / "rung-1.csv").stat().st_mtime_ns for s in settings()}
    assert now == killed_and_rerun["rung1_mtimes"]
    # rung 2 continued from the checkpoints rung 1 left: each of its trainings resumed
    logs = sorted((work / "logs" / "mnist-sample" / "softmax").glob("*/train_rung-2.log"))
    assert len(logs) == 2
    for log in logs:
        assert re.search(r"^Resuming softmax/\S+ from epoch 2,", log.read_text(), re.M), log
    assert (work / RESULTS / "sweep" / "summary.txt").exists()


def test_each_rung_promotes_its_best_by_validation_accuracy(killed_and_rerun):
    work = killed_and_rerun["work"]
    first = sorted(settings(), key=lambda s: (-rung_val_accuracy(work, s, 1), s))
    promoted_to_2 = [s for s in settings() if (work / run_dir(s) / "rung-2.csv").exists()]
    assert sorted(promoted_to_2) == sorted(first[:2])
    second = sorted(promoted_to_2, key=lambda s: (-rung_val_accuracy(work, s, 2), s))
    finished = [s for s in settings() if (work / run_dir(s) / "param.hdf5").exists()]
    assert finished == second[:1]
    decision = json.loads(
        (work / RESULTS / "sweep" / "halving" / "softmax" / "rung-1.json").read_text()
    )
    assert [row["setting"] for row in decision["settings"]] == first
    with open(work / RESULTS / "sweep" / "rungs.csv", newline="") as handle:
        rows = {row["setting"]: row for row in csv.DictReader(handle)}
    assert rows[first[-1]]["stopped_at"] == "1" and rows[second[0]]["stopped_at"] == ""
    summary = (work / RESULTS / "sweep" / "summary.txt").read_text()
    # 2 settings x 1 epoch + 1 x 2 + 1 x 4 of the grid's 4 x 4
    assert "4 -> 2 -> 1 settings; 8 epochs trained of the 16" in summary, summary
    assert "Successive halving" in (work / RESULTS / "report.html").read_text()


def test_the_winner_ends_with_the_weights_of_one_training_to_the_end(killed_and_rerun, tmp_path):
    work = killed_and_rerun["work"]
    (winner,) = [s for s in settings() if (work / run_dir(s) / "param.hdf5").exists()]
    rate = float(winner.split("=")[1])
    reference = copy_workflow(tmp_path / "reference")
    once = {
        **BASE,
        "hyperparameters": {"softmax": {**BASE["hyperparameters"]["softmax"], "epochs": RUNGS[-1]}},
        "sweep": {"families": {"softmax": {"settings": [{"learning_rate": rate}]}}},
    }
    (reference / "once.yaml").write_text(yaml.safe_dump(once))
    target = str(run_dir(winner) / "param.hdf5")
    snakemake(reference, target, "--configfile", "once.yaml")

    def weights(path: Path) -> dict[str, np.ndarray]:
        arrays = {}
        with h5py.File(path) as h5:
            h5.visititems(
                lambda name, item: arrays.update({name: item[()]})
                if isinstance(item, h5py.Dataset) else None
            )  # fmt: skip
        return arrays

    halved, full = weights(work / target), weights(reference / target)
    assert halved.keys() == full.keys() and halved
    for name in full:
        np.testing.assert_array_equal(halved[name], full[name], err_msg=name)
    with open(work / run_dir(winner) / "history.csv", newline="") as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == [1, 2, 3, 4]  # every epoch once, across the three rungs
