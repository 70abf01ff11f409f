"""Workflows through `snakemake --profile profiles/uge` on a real Grid Engine.

tests/schedulers/gridengine_up.sh starts Son of Grid Engine's sge_qmaster and
sge_execd on localhost (Debian's gridengine-* packages) with a "smp" parallel
environment and a consumable "gpu" complex. What ran is checked in Grid
Engine's own records: qacct (accounting) and qstat -j.
"""

from __future__ import annotations

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

FAST = ["--seconds-between-status-checks", "1", "--latency-wait", "10"]


@pytest.fixture(scope="module", autouse=True)
def gridengine():
    bring_up("gridengine")


def submitted_ids(out: str) -> list[str]:
    """Grid Engine job ids, in submission order, from cluster-generic's log lines."""
    return re.findall(r"Submitted (?:group )?job \d+ with external jobid '(\d+)'", out)


def qacct(jobid: str) -> dict[str, str]:
    """The accounting record of a finished job (waits briefly for it to be written)."""

    def record():
        r = subprocess.run(["qacct", "-j", jobid], capture_output=True, text=True)
        if r.returncode != 0:
            return None
        fields = {}
        for line in r.stdout.splitlines():
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
        return fields if "exit_status" in fields else None

    return wait_for(record, 30, f"qacct record of job {jobid}")


def test_toy_workflow_runs_each_rule_as_a_job_with_its_gpu(tmp_path):
    work = toy_workdir(tmp_path)
    # A site setting full of shell syntax travels as one qsub argument (-ac).
    env = {"MNIST_UGE_EXTRA": f"-ac 'note={EVIL_VALUE}'"}
    out = run_snakemake(
        work,
        "--profile",
        "profiles/uge",
        *FAST,
        "--config",
        "gpu=1",
        f"tag={EVIL_TAG}",
        env=env,
        timeout=300,
    )
    records = {jid: qacct(jid) for jid in submitted_ids(out)}
    rules = sorted(r["jobname"].split(".")[0] for r in records.values())
    # download is a localrule: it ran on the "login node", not through qsub.
    assert rules == ["evaluate", "preprocess", "report", "train"]
    assert all(r["failed"] == "0" and r["exit_status"] == "0" for r in records.values())

    train_id, train = next((j, r) for j, r in records.items() if r["jobname"].startswith("train"))
    # What was requested, as Grid Engine recorded it.
    assert "gpu=1" in train["category"]
    assert "-pe smp 2" in train["category"]
    assert "h_rt=300" in train["category"]
    assert "mem_free=150M" in train["category"]  # 300 MB over 2 slots, not h_vmem
    assert "h_vmem" not in train["category"]
    env_rec = read_env_record(only(list((work / "results").glob("env_train_*.txt"))))
    assert env_rec["JOB_ID"] == train_id
    assert env_rec["NSLOTS"] == "2"
    assert_nothing_executed(tmp_path, Path.cwd())


def test_killed_job_is_retried_and_its_partial_output_discarded(tmp_path):
    work = toy_workdir(tmp_path)
    target = "results/prep.txt"
    proc = start_snakemake(
        work, "--profile", "profiles/uge", *FAST, target, "--config", "hang_once=600"
    )

    def running_preprocess():
        listing = subprocess.run(["qstat"], capture_output=True, text=True).stdout
        ids = [
            f[0]
            for f in (ln.split() for ln in listing.splitlines())
            if len(f) > 4 and f[2].startswith("preprocess") and f[4] == "r"
        ]
        return ids and (work / ".hang_marker").exists() and ids[0]

    jobid = wait_for(running_preprocess, 120, "the first preprocess job to run", proc)
    subprocess.run(["qdel", jobid], check=True, capture_output=True)
    out = wait_snakemake(proc, 240)

    ids = submitted_ids(out)
    preps = [(j, qacct(j)) for j in ids if qacct(j)["jobname"].startswith("preprocess")]
    assert len(preps) == 2, out
    assert preps[0][0] == jobid
    assert preps[0][1]["exit_status"] != "0" or preps[0][1]["failed"] != "0"
    assert preps[1][1]["exit_status"] == "0" and preps[1][1]["failed"] == "0"
    assert (work / target).read_text().strip() == "raw"


def test_real_pipeline_through_the_profile(tmp_path):
    work = real_workdir(tmp_path)
    out = run_snakemake(
        work,
        "--profile",
        "profiles/uge",
        *FAST,
        "--configfile",
        "config/scheduler-test.yaml",
        timeout=420,
    )
    records = [qacct(j) for j in submitted_ids(out)]
    rules = {r["jobname"].split(".")[0] for r in records}
    assert {"preprocess", "train", "evaluate", "report"} <= rules, records
    assert "download" not in rules
    assert all(r["exit_status"] == "0" for r in records)
    train = next(r for r in records if r["jobname"].startswith("train"))
    assert "gpu=1" in train["category"]
    assert (work / "results" / "mnist-sample" / "report.html").exists()


def test_gpu_model_is_asked_for_with_the_sites_complex_or_refused(tmp_path):
    """gpu_model has no standard Grid Engine complex: MNIST_UGE_GPU_MODEL_RESOURCE names the
    site's. Here the host complex `arch` (lx-amd64 on this host) stands in for a site's
    GPU-model complex: a request Grid Engine must match against the host to run the job."""
    work = toy_workdir(tmp_path)
    target = "results/model_toy.txt"
    args = ["--profile", "profiles/uge", *FAST, target, "--config", "gpu=1", "gpu_model=lx-amd64"]
    refused = run_snakemake(work, *args, "--retries", "0", check=False)
    assert "uge submit: nothing submitted: resource gpu_model='lx-amd64'" in refused
    assert "set MNIST_UGE_GPU_MODEL_RESOURCE to your site's resource" in refused
    names = [qacct(j)["jobname"] for j in submitted_ids(refused)]
    assert not [n for n in names if n.startswith("train")], names  # only preprocess ran

    out = run_snakemake(work, *args, env={"MNIST_UGE_GPU_MODEL_RESOURCE": "arch"})
    (train,) = [r for r in map(qacct, submitted_ids(out)) if r["jobname"].startswith("train")]
    assert "gpu=1" in train["category"] and "arch=lx-amd64" in train["category"]
    assert train["failed"] == "0" and train["exit_status"] == "0"
