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
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from schedulers.schedtest import (
    EVIL_TAG,
    EVIL_VALUE,
    assert_nothing_executed,
    bring_up,
    only,
    read_env_record,
    real_workdir,
    run_snakemake,
    start_snakemake,
    toy_workdir,
    wait_for,
    wait_snakemake,
)

pytestmark = pytest.mark.scheduler

PBS_BIN = Path("/opt/pbs/bin")
# PBS's qsub/qstat first: Grid Engine's commands of the same names are in /usr/bin.
PBS_ENV = {"PATH": f"{PBS_BIN}{os.pathsep}{os.environ['PATH']}"}
FAST = ["--seconds-between-status-checks", "1", "--latency-wait", "10"]


@pytest.fixture(scope="module", autouse=True)
def openpbs():
    bring_up("pbs")


def submitted_ids(out: str) -> list[str]:
    """PBS job ids (e.g. 12.vm), in submission order, from cluster-generic's log lines."""
    return re.findall(r"Submitted (?:group )?job \d+ with external jobid '([^']+)'", out)


def pbs_job(jobid: str) -> dict:
    """PBS's record of a job, once it has finished (job_state F)."""

    def record():
        r = subprocess.run(
            [PBS_BIN / "qstat", "-x", "-f", "-F", "json", jobid], capture_output=True, text=True
        )
        if r.returncode != 0:
            return None
        job = next(iter(json.loads(r.stdout, strict=False)["Jobs"].values()))
        return job if job["job_state"] == "F" else None

    return wait_for(record, 60, f"PBS's record of finished job {jobid}")


def jobs_by_rule(out: str) -> dict[str, dict]:
    jobs = {}
    for jobid in submitted_ids(out):
        job = pbs_job(jobid)
        job["id"] = jobid
        jobs.setdefault(job["Job_Name"].split(".")[0], []).append(job)
    return jobs


def test_toy_workflow_runs_each_rule_as_a_pbs_job_with_its_resources(tmp_path):
    work = toy_workdir(tmp_path)
    env = {
        **PBS_ENV,
        "MNIST_PBS_QUEUE": "workq",
        "MNIST_PBS_PROJECT": "proj_mnist",
        # A site setting full of shell syntax travels as one qsub argument (-v).
        "MNIST_PBS_EXTRA": f"-v 'MNIST_NOTE={EVIL_VALUE}'",
    }
    out = run_snakemake(
        work, "--profile", "profiles/pbs", *FAST, "--config", "gpu=1", f"tag={EVIL_TAG}",
        env=env, timeout=300,
    )  # fmt: skip
    jobs = jobs_by_rule(out)
    # download is a localrule: it ran on the "login node", not through qsub.
    assert sorted(jobs) == ["evaluate", "preprocess", "report", "train"]
    assert all(len(js) == 1 for js in jobs.values())
    jobs = {rule: js[0] for rule, js in jobs.items()}
    assert all(j["Exit_status"] == 0 for j in jobs.values())
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
    env_rec = read_env_record(only(list((work / "results").glob("env_train_*.txt"))))
    assert env_rec["PBS_JOBID"] == jobs["train"]["id"]
    assert env_rec["NCPUS"] == "2"
    assert env_rec["PWD"] == str(work)  # it started in $HOME; the jobscript changed directory
    assert jobs["train"]["Variable_List"]["MNIST_NOTE"] == EVIL_VALUE
    # PBS's own output file, named <jobid>.OU, under logs/pbs/.
    assert (work / "logs" / "pbs" / f"{jobs['train']['id']}.OU").exists()
    assert_nothing_executed(tmp_path, Path.cwd())


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
    """walltime 1 min: MOM sends SIGTERM, SIGKILL kill_delay (10 s) later; about 70 s in all."""
    work = toy_workdir(tmp_path)
    target = "results/prep.txt"
    out = run_snakemake(
        work, "--profile", "profiles/pbs", *FAST, target,
        "--set-resources", "preprocess:runtime=1", "--config", "hang_once=600",
        env=PBS_ENV, timeout=300,
    )  # fmt: skip
    preps = [pbs_job(j) for j in submitted_ids(out)]
    assert [j["Exit_status"] for j in preps] == [-29, 0], preps  # -29: walltime exceeded
    assert "exceeded resource walltime" in preps[0]["comment"]
    assert preps[0]["Resource_List"]["walltime"] == "00:01:00"
    # The job's trap saw SIGTERM before the hard kill: the warning training checkpoints on.
    assert (work / ".term_marker").exists()
    assert (work / target).read_text().strip() == "raw"  # the partial output was replaced


def test_qdel_is_a_failure_and_the_job_is_retried(tmp_path):
    work = toy_workdir(tmp_path)
    target = "results/prep.txt"
    proc = start_snakemake(
        work, "--profile", "profiles/pbs", *FAST, target, "--config", "hang_once=600",
        env=PBS_ENV,
    )  # fmt: skip

    def running_preprocess():
        r = subprocess.run([PBS_BIN / "qstat", "-f", "-F", "json"], capture_output=True, text=True)
        jobs = (
            json.loads(r.stdout or "{}", strict=False).get("Jobs", {}) if r.returncode == 0 else {}
        )
        ids = [
            jid
            for jid, j in jobs.items()
            if j["Job_Name"] == "preprocess"
            and j["job_state"] == "R"
            and j["Variable_List"].get("PBS_O_WORKDIR") == str(work)
        ]
        return ids and (work / ".hang_marker").exists() and ids[0]

    jobid = wait_for(running_preprocess, 120, "the first preprocess job to run", proc)
    subprocess.run([PBS_BIN / "qdel", jobid], check=True, capture_output=True)
    out = wait_snakemake(proc, 240)
    preps = [(j, pbs_job(j)) for j in submitted_ids(out)]
    assert [j for j, _ in preps][0] == jobid and len(preps) == 2, out
    assert preps[0][1]["substate"] == 91  # deleted; its Exit_status says nothing reliable
    assert preps[1][1]["Exit_status"] == 0
    assert f"pbs status: job {jobid} failed: deleted (qdel)" in out
    assert (work / target).read_text().strip() == "raw"


def test_real_pipeline_through_the_profile(tmp_path):
    work = real_workdir(tmp_path)
    env = {**PBS_ENV, "MNIST_PBS_QUEUE": "workq", "MNIST_PBS_PROJECT": "proj_mnist"}
    out = run_snakemake(
        work, "--profile", "profiles/pbs", *FAST, "--configfile", "config/scheduler-test.yaml",
        env=env, timeout=480,
    )  # fmt: skip
    jobs = jobs_by_rule(out)
    assert {"preprocess", "train", "evaluate", "report"} <= set(jobs), out[-3000:]
    assert "download" not in jobs
    everything = [j for js in jobs.values() for j in js]
    assert all(j["Exit_status"] == 0 for j in everything)
    assert all(j["queue"] == "workq" and j["project"] == "proj_mnist" for j in everything)
    # config/scheduler-test.yaml: train 2 threads, 1500 MB, 10 min, 1 GPU; evaluate no GPU.
    (train,) = jobs["train"]
    assert train["Resource_List"]["select"] == "1:ncpus=2:mem=1500mb:ngpus=1"
    assert train["Resource_List"]["walltime"] == "00:10:00"
    assert all(j["Resource_List"]["select"] == "1:ncpus=1:mem=1500mb" for j in jobs["evaluate"])
    assert (work / "results" / "mnist-sample" / "report.html").exists()


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
