"""Workflows through `snakemake --profile profiles/uge` on a real Grid Engine.

tests/schedulers/gridengine_up.sh starts Son of Grid Engine's sge_qmaster and
sge_execd on localhost (Debian's gridengine-* packages) with a "smp" parallel
environment and a consumable "gpu" complex. What ran is checked in Grid
Engine's own records: qacct (accounting) and qstat -j.

The runs the schedulers share (the toy workflow, a cancelled job, a job at its time limit,
the real pipeline) and their common checks are in tests/schedulers/clusters.py; this file
adds Grid Engine's own records.
"""

from __future__ import annotations

import pytest

from schedulers.clusters import (
    GridEngine,
    cancelled_and_retried,
    real_pipeline,
    toy_run,
)
from schedulers.schedtest import EVIL_VALUE, run_snakemake, toy_workdir

pytestmark = pytest.mark.scheduler

UGE = GridEngine()


@pytest.fixture(scope="module", autouse=True)
def gridengine():
    UGE.bring_up()


def test_toy_workflow_runs_each_rule_as_a_job_with_its_gpu(tmp_path):
    # A site setting full of shell syntax travels as one qsub argument (-ac).
    _, jobs, train_env = toy_run(UGE, tmp_path, env={"MNIST_UGE_EXTRA": f"-ac 'note={EVIL_VALUE}'"})
    train = jobs["train"].record
    # What was requested, as Grid Engine recorded it.
    assert "gpu=1" in train["category"]
    assert "-pe smp 2" in train["category"]
    assert "h_rt=300" in train["category"]
    assert "mem_free=150M" in train["category"]  # 300 MB over 2 slots, not h_vmem
    assert "h_vmem" not in train["category"]
    assert train_env["NSLOTS"] == "2"


def test_killed_job_is_retried_and_its_partial_output_discarded(tmp_path):
    cancelled_and_retried(UGE, tmp_path)


def test_real_pipeline_through_the_profile(tmp_path):
    jobs = real_pipeline(UGE, tmp_path)
    (train,) = jobs["train"]
    assert "gpu=1" in train.record["category"]


def test_gpu_model_is_asked_for_with_the_sites_complex_or_refused(tmp_path):
    """gpu_model has no standard Grid Engine complex: MNIST_UGE_GPU_MODEL_RESOURCE names the
    site's. Here the host complex `arch` (lx-amd64 on this host) stands in for a site's
    GPU-model complex: a request Grid Engine must match against the host to run the job."""
    work = toy_workdir(tmp_path)
    target = "results/model_toy.txt"
    args = ["--profile", UGE.profile, *UGE.fast, target, "--config", "gpu=1", "gpu_model=lx-amd64"]
    refused = run_snakemake(work, *args, "--retries", "0", check=False)
    assert "uge submit: nothing submitted: resource gpu_model='lx-amd64'" in refused
    assert "set MNIST_UGE_GPU_MODEL_RESOURCE to your site's resource" in refused
    assert "train" not in {j.rule for j in UGE.jobs(refused, {})}  # only preprocess ran

    out = run_snakemake(work, *args, env={"MNIST_UGE_GPU_MODEL_RESOURCE": "arch"})
    (train,) = [j for j in UGE.jobs(out, {}) if j.rule == "train"]
    assert "gpu=1" in train.record["category"] and "arch=lx-amd64" in train.record["category"]
    assert train.ok, train
