"""Resource values that would run a command on the submit host stop the run before any job.

The SLURM plugin 2.8.0 pastes mem_mb_per_cpu, slurm_extra and others unquoted into the sbatch
command it runs through a shell (mnistflow.resource_safety): on the real SLURM of
tests/schedulers/slurm_up.sh, such a value must not create its marker file. The PJM simulator
checks that a fraction or an absurd runtime never becomes a directive.
"""

from __future__ import annotations

import os

import pytest

from conftest import copy_workflow
from schedulers.schedtest import PJM_SIM_DIR, bring_up, run_snakemake

pytestmark = pytest.mark.scheduler
DATA = "results/mnist-sample/data.h5"
SLURM_FAST = ["--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10"]


@pytest.fixture
def work(tmp_path):
    return copy_workflow(tmp_path / "pipeline")


@pytest.mark.parametrize(
    ("resource", "value"),
    [
        ("mem_mb_per_cpu", "100; touch {marker} #"),
        ("slurm_extra", "--mail-type=END; touch {marker} #"),
    ],
)
def test_a_resource_that_would_run_a_command_through_sbatch_submits_nothing(work, resource, value):
    bring_up("slurm")
    marker = work / "PWN"
    setting = f"preprocess:{resource}={value.format(marker=marker)!r}"
    out = run_snakemake(
        work, DATA, "--profile", "profiles/slurm", *SLURM_FAST,
        "--config", "dataset=mnist-sample", "--set-resources", setting,
        check=False, timeout=180,
    )  # fmt: skip
    assert not marker.exists(), "the resource value ran as a command on the submit host"
    assert "nothing was submitted" in out
    assert f"rule preprocess: {resource}=" in out
    assert ("whole number of MB per CPU" if resource == "mem_mb_per_cpu" else "options") in out
    assert "Submitted batch job" not in out and not (work / DATA).exists()


def test_fractions_and_absurd_runtimes_never_become_pjm_directives(work, tmp_path):
    env = {
        "PATH": f"{PJM_SIM_DIR}{os.pathsep}{os.environ['PATH']}",
        "PJM_SIM_DIR": str(tmp_path / "pjm-state"),
    }
    out = run_snakemake(
        work, DATA, "--profile", "profiles/pjm",
        "--config", "dataset=mnist-sample",
        "--set-resources", "preprocess:gpu=1.7", "preprocess:runtime=10**9",
        env=env, check=False, timeout=120,
    )  # fmt: skip
    assert "--set-resources preprocess:gpu=1.7: must be a whole number" in out
    assert "rule preprocess: runtime=1000000000 must be a whole number of minutes" in out
    assert "nothing was submitted" in out
    assert not list((tmp_path / "pjm-state").glob("*.json")), "a job was submitted"
    assert not (work / DATA).exists()
