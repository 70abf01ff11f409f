"""Workflows through `snakemake --profile profiles/slurm` on a real one-node SLURM.

tests/schedulers/slurm_up.sh starts slurmctld + slurmd + munged (+ slurmdbd and
mariadb for accounting) on localhost with two fake GPUs (gres.conf on character
devices). What ran is checked in SLURM's own records (squeue --states=all,
scontrol, sacct). Both of the plugin's status modes are exercised: squeue
(the profile's default, needs no accounting) and sacct.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from schedulers.schedtest import (
    EVIL_TAG,
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

# Poll soon after submitting (plugin default: 40 s) to keep the tests short.
FAST = ["--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10"]
SQUEUE = {"MNIST_SLURM_STATUS": "squeue"}


@pytest.fixture(scope="module", autouse=True)
def slurm():
    bring_up("slurm")


def slurm_jobs(out: str) -> list[dict[str, str]]:
    """This run's jobs as SLURM lists them: id, comment (rule + wildcards), state."""
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    listing = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%k|%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = []
    for line in listing.splitlines():
        jobid, comment, state = line.split("|")
        rule = re.match(r"rule_([A-Za-z0-9]+)", comment.strip()).group(1)
        jobs.append({"id": jobid.strip(), "rule": rule, "state": state.strip()})
    return sorted(jobs, key=lambda j: int(j["id"]))


def scontrol(jobid: str) -> str:
    return subprocess.run(
        ["scontrol", "show", "job", jobid], capture_output=True, text=True, check=True
    ).stdout


def test_toy_workflow_runs_each_rule_as_a_job_with_its_gpu(tmp_path):
    work = toy_workdir(tmp_path)
    out = run_snakemake(
        work,
        "--profile",
        "profiles/slurm",
        *FAST,
        "--config",
        "gpu=1",
        f"tag={EVIL_TAG}",
        env=SQUEUE,
        timeout=300,
    )
    jobs = slurm_jobs(out)
    # download is a localrule: it ran on the "login node", not through sbatch.
    assert sorted(j["rule"] for j in jobs) == ["evaluate", "preprocess", "report", "train"]
    assert all(j["state"] == "COMPLETED" for j in jobs), jobs

    train = next(j for j in jobs if j["rule"] == "train")
    info = scontrol(train["id"])
    assert "gres:gpu:1" in info  # --gpus=1 reached SLURM
    assert "NumCPUs=2" in info  # threads: 2 -> --cpus-per-task=2
    assert "MinMemoryNode=300M" in info  # mem_mb
    assert "TimeLimit=00:05:00" in info  # runtime
    env = read_env_record(only(list((work / "results").glob("env_train_*.txt"))))
    assert env["SLURM_JOB_ID"] == train["id"]
    assert env["CUDA_VISIBLE_DEVICES"] == "0"  # slurmd handed the job a (fake) GPU
    prep = read_env_record(work / "results" / "env_preprocess.txt")
    assert "CUDA_VISIBLE_DEVICES" not in prep  # no GPU asked, none given

    assert_nothing_executed(tmp_path, Path.cwd())


def test_cancelled_job_is_retried_and_its_partial_output_discarded(tmp_path):
    work = toy_workdir(tmp_path)
    target = "results/prep.txt"
    proc = start_snakemake(
        work,
        "--profile",
        "profiles/slurm",
        *FAST,
        target,
        "--config",
        "hang_once=600",
        env=SQUEUE,
    )

    def running_preprocess():
        listing = subprocess.run(
            ["squeue", "--noheader", "--states=RUNNING", "--format=%i|%k"],
            capture_output=True,
            text=True,
        ).stdout
        ids = [ln.split("|")[0] for ln in listing.splitlines() if "rule_preprocess" in ln]
        return ids and (work / ".hang_marker").exists() and ids[0]

    jobid = wait_for(running_preprocess, 120, "the first preprocess job to run", proc)
    subprocess.run(["scancel", jobid], check=True)
    out = wait_snakemake(proc, 240)

    preps = [j for j in slurm_jobs(out) if j["rule"] == "preprocess"]
    assert [j["state"] for j in preps] == ["CANCELLED", "COMPLETED"], preps
    # The cancelled attempt's "partial" file was not kept: the retry rewrote it.
    assert (work / target).read_text().strip() == "raw"


def test_job_at_its_time_limit_gets_sigterm_first_and_is_retried(tmp_path):
    """-t 1: SLURM sends SIGTERM to the job's processes, SIGKILL KillWait later (~1.5 min)."""
    work = toy_workdir(tmp_path)
    target = "results/prep.txt"
    out = run_snakemake(
        work, "--profile", "profiles/slurm", *FAST, target,
        "--set-resources", "preprocess:runtime=1", "--config", "hang_once=600",
        env=SQUEUE, timeout=300,
    )  # fmt: skip
    preps = [j for j in slurm_jobs(out) if j["rule"] == "preprocess"]
    assert [j["state"] for j in preps] == ["TIMEOUT", "COMPLETED"], preps
    # The rule's own shell, under srun and snakemake in the job step, saw the SIGTERM:
    # the warning that training checkpoints on.
    assert (work / ".term_marker").exists()
    assert (work / target).read_text().strip() == "raw"


def test_real_pipeline_through_the_profile(tmp_path):
    work = real_workdir(tmp_path)
    out = run_snakemake(
        work,
        "--profile",
        "profiles/slurm",
        *FAST,
        "--configfile",
        "config/scheduler-test.yaml",
        timeout=420,
    )
    jobs = slurm_jobs(out)
    rules = {j["rule"] for j in jobs}
    assert {"preprocess", "train", "evaluate", "report"} <= rules, jobs
    assert "download" not in rules
    assert all(j["state"] == "COMPLETED" for j in jobs), jobs
    train = next(j for j in jobs if j["rule"] == "train")
    assert "gres:gpu:1" in scontrol(train["id"])
    assert (work / "results" / "mnist-sample" / "report.html").exists()


def accounting_available() -> bool:
    r = subprocess.run(["sacctmgr", "-n", "list", "cluster"], capture_output=True, text=True)
    return r.returncode == 0 and bool(r.stdout.strip())


def test_sacct_status_mode(tmp_path):
    """MNIST_SLURM_STATUS=sacct: the plugin follows jobs through slurmdbd's records."""
    if not accounting_available():
        pytest.skip("SLURM accounting (slurmdbd) is not running: slurm_up.sh SLURM_ACCOUNTING=1")
    work = toy_workdir(tmp_path)
    out = run_snakemake(
        work,
        "results/prep.txt",
        "--profile",
        "profiles/slurm",
        *FAST,
        env={"MNIST_SLURM_STATUS": "sacct"},
        timeout=240,
    )
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    records = subprocess.run(
        [
            "sacct",
            "-X",
            "--parsable2",
            "--noheader",
            "--name",
            run_id,
            "--format=JobIdRaw,Comment,State,AllocTRES",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    rows = [r.split("|") for r in records]
    assert [(comment, state) for _, comment, state, _ in rows] == [
        ("rule_preprocess", "COMPLETED")
    ], rows
    assert "cpu=1" in rows[0][3] and "mem=200M" in rows[0][3]  # threads, mem_mb
