"""Workflows through `snakemake --profile profiles/slurm` on a real one-node SLURM.

tests/schedulers/slurm_up.sh starts slurmctld + slurmd + munged (+ slurmdbd and
mariadb for accounting) on localhost with two fake GPUs (gres.conf on character
devices). What ran is checked in SLURM's own records (squeue --states=all,
scontrol, sacct). Both of the plugin's status modes are exercised: squeue
(the profile's default, needs no accounting) and sacct.

The runs the schedulers share (the toy workflow, a cancelled job, a job at its time limit,
the real pipeline) and their common checks are in tests/schedulers/clusters.py; this file
adds SLURM's own records.
"""

from __future__ import annotations

import pytest

from schedulers.clusters import (
    PREP,
    Slurm,
    cancelled_and_retried,
    real_pipeline,
    stopped_at_the_time_limit_and_retried,
    toy_run,
)
from schedulers.schedtest import read_env_record, run_snakemake, toy_workdir

pytestmark = pytest.mark.scheduler

SLURM = Slurm()


@pytest.fixture(scope="module", autouse=True)
def slurm():
    SLURM.bring_up()


def test_toy_workflow_runs_each_rule_as_a_job_with_its_gpu(tmp_path):
    work, jobs, train_env = toy_run(SLURM, tmp_path)
    info = SLURM.scontrol(jobs["train"].id)
    assert "gres:gpu:1" in info  # --gpus=1 reached SLURM
    assert "NumCPUs=2" in info  # threads: 2 -> --cpus-per-task=2
    assert "MinMemoryNode=300M" in info  # mem_mb
    assert "TimeLimit=00:05:00" in info  # runtime
    assert train_env["CUDA_VISIBLE_DEVICES"] == "0"  # slurmd handed the job a (fake) GPU
    prep = read_env_record(work / "results" / "env_preprocess.txt")
    assert "CUDA_VISIBLE_DEVICES" not in prep  # no GPU asked, none given


def test_cancelled_job_is_retried_and_its_partial_output_discarded(tmp_path):
    preps, _ = cancelled_and_retried(SLURM, tmp_path)
    assert [j.record["state"] for j in preps] == ["CANCELLED", "COMPLETED"], preps


def test_job_at_its_time_limit_gets_sigterm_first_and_is_retried(tmp_path):
    """-t 1: SLURM sends SIGTERM to the job's processes, SIGKILL KillWait later (~1.5 min).
    The rule's own shell, under srun and snakemake in the job step, saw the SIGTERM."""
    preps = stopped_at_the_time_limit_and_retried(SLURM, tmp_path)
    assert [j.record["state"] for j in preps] == ["TIMEOUT", "COMPLETED"], preps


def test_real_pipeline_through_the_profile(tmp_path):
    jobs = real_pipeline(SLURM, tmp_path)
    (train,) = jobs["train"]
    assert "gres:gpu:1" in SLURM.scontrol(train.id)


def test_sacct_status_mode(tmp_path):
    """MNIST_SLURM_STATUS=sacct: the plugin follows jobs through slurmdbd's records."""
    if not SLURM.accounting():
        pytest.skip("SLURM accounting (slurmdbd) is not running: slurm_up.sh SLURM_ACCOUNTING=1")
    work = toy_workdir(tmp_path)
    out = run_snakemake(
        work, PREP, "--profile", SLURM.profile, *SLURM.fast,
        env={"MNIST_SLURM_STATUS": "sacct"}, timeout=240,
    )  # fmt: skip
    rows = SLURM.accounted(out, "JobIdRaw,Comment,State,AllocTRES")
    assert [(comment, state) for _, comment, state, _ in rows] == [
        ("rule_preprocess", "COMPLETED")
    ], rows
    assert "cpu=1" in rows[0][3] and "mem=200M" in rows[0][3]  # threads, mem_mb
