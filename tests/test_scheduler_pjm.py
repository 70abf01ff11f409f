"""Workflows through `snakemake --profile profiles/pjm` on the PJM simulator.

PJM (Fujitsu) cannot be installed here, so tests/schedulers/pjm_sim provides
pjsub / pjstat / pjdel that run jobs as local processes and answer in PJM's
formats. The simulator's pjstat -H history is the record checked here.

The runs the schedulers share (the toy workflow, a cancelled job, a job at its time limit,
the real pipeline) and their common checks are in tests/schedulers/clusters.py; this file
adds the simulator's own records.
"""

from __future__ import annotations

import pytest

from schedulers.clusters import PJM, PREP, cancelled_and_retried, real_pipeline, toy_run
from schedulers.schedtest import EVIL_VALUE, start_snakemake, toy_workdir, wait_snakemake

pytestmark = pytest.mark.scheduler

SIMULATOR = PJM()
history, sim_job = SIMULATOR.history, SIMULATOR.sim_job


@pytest.fixture
def pjm_env(tmp_path) -> dict[str, str]:
    """PATH with the simulator first, and a private simulator state directory."""
    return SIMULATOR.env(tmp_path)


def test_toy_workflow_runs_each_rule_as_a_job_with_its_gpu(tmp_path):
    site = {
        "MNIST_PJM_RSCGRP": "small",
        "MNIST_PJM_GROUP": "hp000000",
        # A site setting full of shell syntax travels as one pjsub argument.
        "MNIST_PJM_EXTRA": f"-x 'MNIST_NOTE={EVIL_VALUE}'",
        "MNIST_PJM_GFSCACHE": "/vol0004:/vol0005",
    }
    work, jobs, train_env = toy_run(SIMULATOR, tmp_path, env=site)
    assert all(j.record["RSC_GRP"] == "small" for j in jobs.values())
    train = jobs["train"].record
    rec = sim_job(SIMULATOR.env(tmp_path), train["JOB_ID"])
    assert rec["L"]["gpu"] == "1"
    assert rec["L"]["elapse"] == "00:05:00"
    assert rec["L"]["node"] == "1"
    assert rec["group"] == "hp000000"
    assert rec["x"] == {"PJM_LLIO_GFSCACHE": "/vol0004:/vol0005", "MNIST_NOTE": EVIL_VALUE}
    assert rec["join"] and rec["stats"]
    assert train_env["CUDA_VISIBLE_DEVICES"] == "0"
    # PJM's own output files, named <jobname>.<jobid>.out / .stats, in logs/pjm.
    assert (work / "logs" / "pjm" / f"{train['JOB_NAME']}.{train['JOB_ID']}.out").exists()
    assert (work / "logs" / "pjm" / f"{train['JOB_NAME']}.{train['JOB_ID']}.stats").exists()


def test_cancelled_job_is_retried_and_its_partial_output_discarded(tmp_path):
    preps, _ = cancelled_and_retried(SIMULATOR, tmp_path)
    assert [(j.record["ST"], j.record["PC"]) for j in preps] == [("CCL", "1"), ("EXT", "0")], preps


def test_job_past_its_elapse_limit_fails_the_run_cleanly(tmp_path, pjm_env):
    """Killed at its elapse limit (1 min, scaled to 3 s), with no retry left."""
    work = toy_workdir(tmp_path)
    pjm_env = {**pjm_env, "PJM_SIM_ELAPSE_SCALE": "0.05"}
    proc = start_snakemake(
        work,
        PREP,
        "--profile",
        SIMULATOR.profile,
        *SIMULATOR.fast,
        "--retries",
        "0",
        "--set-resources",
        "preprocess:runtime=1",
        "--config",
        "hang_once=600",
        env=pjm_env,
    )
    out = wait_snakemake(proc, 90, check=False)
    assert proc.returncode != 0
    preps = [j for j in history(pjm_env) if j["JOB_NAME"].startswith("preprocess")]
    assert [(j["ST"], j["PC"]) for j in preps] == [("EXT", "11")]  # 11: elapse exceeded
    assert "Error in rule preprocess" in out
    assert not (work / PREP).exists()  # partial output removed


def test_real_pipeline_through_the_profile(tmp_path):
    jobs = real_pipeline(SIMULATOR, tmp_path)
    (train,) = jobs["train"]
    assert sim_job(SIMULATOR.env(tmp_path), train.id)["L"]["gpu"] == "1"
