"""A parameter study through `snakemake --profile profiles/slurm` on the local one-node SLURM.

With job grouping on, the runs of a study are packed into few sbatch jobs instead of two
jobs per run (tests/schedulers/slurm_up.sh brings SLURM up; skipped where it cannot).
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from conftest import copy_workflow
from schedulers.schedtest import bring_up, run_snakemake

pytestmark = pytest.mark.scheduler

# Poll soon after submitting (plugin default: 40 s) to keep the test short.
FAST = ["--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10"]
STUDY = {
    "dataset": "mnist-sample",
    "models": ["softmax"],
    "hyperparameters": {"softmax": {"epochs": 1}},
    "resources": {
        "train": {"threads": 1, "mem_mb": 1000, "runtime": 10},
        "evaluate": {"threads": 1, "mem_mb": 1000, "runtime": 10},
    },
    "sweep": {
        "seeds": [0, 1],
        "threads": 1,
        "families": {"softmax": {"grid": {"learning_rate": [0.01, 0.1]}}},
    },
}
RUNS = 4  # 2 learning rates x 2 seeds


@pytest.fixture(scope="module", autouse=True)
def slurm():
    bring_up("slurm")


def test_grouped_study_submits_fewer_jobs_than_runs(tmp_path):
    work = copy_workflow(tmp_path / "study")
    (work / "study.yaml").write_text(yaml.safe_dump(STUDY))
    out = run_snakemake(
        work,
        "--profile",
        "profiles/slurm",
        *FAST,
        "--configfile",
        "study.yaml",
        # All 4 runs (train + evaluate each) in one job; --cores caps a group job's width at
        # the test node's 2 CPUs, so its runs go two at a time.
        "--group-components",
        "sweep=4",
        "--cores",
        "2",
        timeout=540,
    )
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", out)
    # preprocess, one group of the 4 runs, report (download and the aggregate run locally).
    assert len(submitted) == 3 < RUNS, out[-4000:]
    assert len(re.findall(r"Group job sweep", out)) == 1
    states = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%T", "--jobs", ",".join(submitted)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert states == ["COMPLETED"] * 3, states
    settings = (work / "results" / "mnist-sample" / "sweep" / "settings.csv").read_text()
    assert len(settings.splitlines()) == 1 + 2  # header + 2 settings, 2 seeds each
