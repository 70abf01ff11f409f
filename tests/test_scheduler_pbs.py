"""Workflows through `snakemake --profile profiles/pbs` on a real OpenPBS.

../shared/vendor/openpbs/pbs_up.sh starts OpenPBS 23.06 (the open-source PBS
Professional) on localhost: one node with 2 CPUs and 2 fake GPUs (`ngpus`), job
history on, and ABCI 3.0's queues rt_HC, rt_HG, rt_HF beside workq. What ran is
checked in PBS's own records: `qstat -x -f -F json`.

Jobs are submitted as root (pbs_up.sh sets acl_roots=root): the test's Python
and the scratch workflow live under /root, which pbsuser cannot read. What these
tests check works for root's jobs as for anyone's: MOM sends SIGTERM at the
walltime and then SIGKILL (Exit_status -29), and qdel ends a job with
substate 91 (both seen here, on this build).

The runs the schedulers share (the toy workflow, a cancelled job, a job at its time limit,
the real pipeline) and their common checks are in tests/schedulers/clusters.py; this file
adds PBS's own records.
"""

from __future__ import annotations

import pytest

from schedulers.clusters import (
    PBS_ENV,
    OpenPBS,
    cancelled_and_retried,
    real_pipeline,
    stopped_at_the_time_limit_and_retried,
    toy_run,
)
from schedulers.schedtest import EVIL_VALUE, run_snakemake, toy_workdir

pytestmark = pytest.mark.scheduler

PBS = OpenPBS()
FAST = PBS.fast


@pytest.fixture(scope="module", autouse=True)
def openpbs():
    PBS.bring_up()


def jobs_by_rule(out: str) -> dict[str, list[dict]]:
    """PBS's records of the run's jobs, by rule."""
    jobs = {}
    for job in PBS.jobs(out, PBS_ENV):
        jobs.setdefault(job.rule, []).append(job.record)
    return jobs


def test_toy_workflow_runs_each_rule_as_a_pbs_job_with_its_resources(tmp_path):
    env = {
        "MNIST_PBS_QUEUE": "workq",
        "MNIST_PBS_PROJECT": "proj_mnist",
        # A site setting full of shell syntax travels as one qsub argument (-v).
        "MNIST_PBS_EXTRA": f"-v 'MNIST_NOTE={EVIL_VALUE}'",
    }
    work, jobs, train_env = toy_run(PBS, tmp_path, env=env)
    jobs = {rule: job.record for rule, job in jobs.items()}
    assert all(j["queue"] == "workq" and j["project"] == "proj_mnist" for j in jobs.values())
    # What was asked for, as PBS recorded it: the toy's threads, mem_mb, runtime and gpu.
    selects = {rule: j["Resource_List"]["select"] for rule, j in jobs.items()}
    assert selects == {
        "preprocess": "1:ncpus=1:mem=200mb",
        "train": "1:ncpus=2:mem=300mb:ngpus=1",
        "evaluate": "1:ncpus=1:mem=200mb:ngpus=1",
        "report": "1:ncpus=1:mem=200mb",
    }
    assert all(j["Resource_List"]["walltime"] == "00:05:00" for j in jobs.values())
    assert "ngpus=1" in jobs["train"]["exec_vnode"]  # the scheduler gave it a GPU
    assert train_env["NCPUS"] == "2"
    assert train_env["PWD"] == str(work)  # it started in $HOME; the jobscript changed directory
    assert jobs["train"]["Variable_List"]["MNIST_NOTE"] == EVIL_VALUE
    # PBS's own output file, named <jobid>.OU, under logs/pbs/.
    assert (work / "logs" / "pbs" / f"{jobs['train']['id']}.OU").exists()


def test_abci_mode_picks_the_queue_from_the_gpus(tmp_path):
    work = toy_workdir(tmp_path)
    env = {**PBS_ENV, "MNIST_PBS_MODE": "abci", "MNIST_PBS_PROJECT": "gaa50000"}
    out = run_snakemake(
        work, "--profile", "profiles/pbs", *FAST, "--config", "gpu=1",
        "--set-resources", "evaluate:gpu=0", env=env, timeout=300,
    )  # fmt: skip
    jobs = {rule: js[0] for rule, js in jobs_by_rule(out).items()}
    queues = {rule: j["queue"] for rule, j in jobs.items()}
    # ABCI 3.0: 1 GPU -> rt_HG (16 cores, 1 H200), no GPU -> rt_HC (32 cores).
    assert queues == {
        "preprocess": "rt_HC",
        "train": "rt_HG",
        "evaluate": "rt_HC",
        "report": "rt_HC",
    }
    assert all(j["project"] == "gaa50000" for j in jobs.values())
    assert all(str(j["Resource_List"]["select"]) == "1" for j in jobs.values())  # JSON: 1
    assert all(j["Exit_status"] == 0 for j in jobs.values())


def test_job_killed_at_its_walltime_gets_sigterm_first_and_is_retried(tmp_path):
    """walltime 1 min: MOM sends SIGTERM, SIGKILL kill_delay (10 s) later; about 70 s in all.
    The job's trap saw SIGTERM before the hard kill."""
    preps = [j.record for j in stopped_at_the_time_limit_and_retried(PBS, tmp_path)]
    assert [j["Exit_status"] for j in preps] == [-29, 0], preps  # -29: walltime exceeded
    assert "exceeded resource walltime" in preps[0]["comment"]
    assert preps[0]["Resource_List"]["walltime"] == "00:01:00"


def test_qdel_is_a_failure_and_the_job_is_retried(tmp_path):
    preps, out = cancelled_and_retried(PBS, tmp_path)
    assert preps[0].record["substate"] == 91  # deleted; its Exit_status says nothing reliable
    assert preps[1].record["Exit_status"] == 0
    assert f"pbs status: job {preps[0].id} failed: deleted (qdel)" in out


def test_real_pipeline_through_the_profile(tmp_path):
    env = {"MNIST_PBS_QUEUE": "workq", "MNIST_PBS_PROJECT": "proj_mnist"}
    jobs = {
        rule: [j.record for j in js] for rule, js in real_pipeline(PBS, tmp_path, env=env).items()
    }
    everything = [j for js in jobs.values() for j in js]
    assert all(j["queue"] == "workq" and j["project"] == "proj_mnist" for j in everything)
    # config/scheduler-test.yaml: train 2 threads, 1500 MB, 10 min, 1 GPU; evaluate no GPU.
    (train,) = jobs["train"]
    assert train["Resource_List"]["select"] == "1:ncpus=2:mem=1500mb:ngpus=1"
    assert train["Resource_List"]["walltime"] == "00:10:00"
    assert all(j["Resource_List"]["select"] == "1:ncpus=1:mem=1500mb" for j in jobs["evaluate"])


def test_gpu_model_goes_into_the_select_as_the_sites_resource_or_is_refused(tmp_path):
    """gpu_model has no standard PBS resource: MNIST_PBS_GPU_MODEL_RESOURCE names the site's.

    Here the host resource `arch` (OpenPBS's own, "linux" on this node) stands in for a
    site's GPU-model resource: a request PBS must match against the node to run the job."""
    work = toy_workdir(tmp_path)
    target = "results/model_toy.txt"
    args = ["--profile", "profiles/pbs", *FAST, target, "--config", "gpu=1", "gpu_model=linux"]
    refused = run_snakemake(work, *args, "--retries", "0", env=PBS_ENV, check=False)
    assert "pbs submit: nothing submitted: resource gpu_model='linux'" in refused
    assert "set MNIST_PBS_GPU_MODEL_RESOURCE to your site's resource" in refused
    assert "train" not in jobs_by_rule(refused)  # preprocess ran; train was never submitted

    out = run_snakemake(work, *args, env={**PBS_ENV, "MNIST_PBS_GPU_MODEL_RESOURCE": "arch"})
    (train,) = jobs_by_rule(out)["train"]
    assert train["Resource_List"]["select"] == "1:ncpus=2:mem=300mb:ngpus=1:arch=linux"
    assert train["Exit_status"] == 0
