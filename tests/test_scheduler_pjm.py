"""Workflows through `snakemake --profile profiles/pjm` on the PJM simulator.

PJM (Fujitsu) cannot be installed here, so tests/schedulers/pjm_sim provides
pjsub / pjstat / pjdel that run jobs as local processes and answer in PJM's
formats. The simulator's pjstat -H history is the record checked here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from schedulers.schedtest import (
    EVIL_TAG,
    EVIL_VALUE,
    PJM_SIM_DIR,
    assert_nothing_executed,
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


@pytest.fixture
def pjm_env(tmp_path) -> dict[str, str]:
    """PATH with the simulator first, and a private simulator state directory."""
    return {
        "PATH": f"{PJM_SIM_DIR}{os.pathsep}{os.environ['PATH']}",
        "PJM_SIM_DIR": str(tmp_path / "pjm-state"),
        "PJM_SIM_KILL_GRACE": "1",
    }


def history(env: dict[str, str]) -> list[dict[str, str]]:
    """pjstat -H, parsed: every ended job in the simulator."""
    out = subprocess.run(
        ["pjstat", "-H", "-v", "--choose", "jid,jnam,st,ec,pc,rscg"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout
    lines = out.splitlines()
    header = lines[0].split()
    return [dict(zip(header, ln.split(), strict=True)) for ln in lines[1:]]


def sim_job(env: dict[str, str], jobid: str) -> dict:
    """The simulator's full record of a job: what pjsub was given."""
    return json.loads((Path(env["PJM_SIM_DIR"]) / "jobs" / f"{jobid}.json").read_text())


def test_toy_workflow_runs_each_rule_as_a_job_with_its_gpu(tmp_path, pjm_env):
    work = toy_workdir(tmp_path)
    env = {
        **pjm_env,
        "MNIST_PJM_RSCGRP": "small",
        "MNIST_PJM_GROUP": "hp000000",
        # A site setting full of shell syntax travels as one pjsub argument.
        "MNIST_PJM_EXTRA": f"-x 'MNIST_NOTE={EVIL_VALUE}'",
        "MNIST_PJM_GFSCACHE": "/vol0004:/vol0005",
    }
    run_snakemake(
        work,
        "--profile",
        "profiles/pjm",
        *FAST,
        "--config",
        "gpu=1",
        f"tag={EVIL_TAG}",
        env=env,
        timeout=240,
    )
    jobs = history(env)
    # download is a localrule: it ran on the "login node", not through pjsub.
    assert sorted(j["JOB_NAME"].split(".")[0] for j in jobs) == [
        "evaluate",
        "preprocess",
        "report",
        "train",
    ]
    assert all(j["ST"] == "EXT" and j["EC"] == "0" and j["RSC_GRP"] == "small" for j in jobs)

    train = next(j for j in jobs if j["JOB_NAME"].startswith("train"))
    rec = sim_job(env, train["JOB_ID"])
    assert rec["L"]["gpu"] == "1"
    assert rec["L"]["elapse"] == "00:05:00"
    assert rec["L"]["node"] == "1"
    assert rec["group"] == "hp000000"
    assert rec["x"] == {"PJM_LLIO_GFSCACHE": "/vol0004:/vol0005", "MNIST_NOTE": EVIL_VALUE}
    assert rec["join"] and rec["stats"]
    env_rec = read_env_record(only(list((work / "results").glob("env_train_*.txt"))))
    assert env_rec["PJM_JOBID"] == train["JOB_ID"]
    assert env_rec["CUDA_VISIBLE_DEVICES"] == "0"
    # PJM's own output files, named <jobname>.<jobid>.out / .stats, in logs/pjm.
    assert (work / "logs" / "pjm" / f"{train['JOB_NAME']}.{train['JOB_ID']}.out").exists()
    assert (work / "logs" / "pjm" / f"{train['JOB_NAME']}.{train['JOB_ID']}.stats").exists()
    assert_nothing_executed(tmp_path, Path.cwd())


def test_cancelled_job_is_retried_and_its_partial_output_discarded(tmp_path, pjm_env):
    work = toy_workdir(tmp_path)
    target = "results/prep.txt"
    proc = start_snakemake(
        work,
        "--profile",
        "profiles/pjm",
        *FAST,
        target,
        "--config",
        "hang_once=600",
        env=pjm_env,
    )
    full_env = {**os.environ, **pjm_env}

    def running_preprocess():
        out = subprocess.run(
            ["pjstat", "-v", "--choose", "jid,jnam,st"],
            capture_output=True,
            text=True,
            env=full_env,
        ).stdout
        ids = [
            f[0]
            for f in (ln.split() for ln in out.splitlines()[1:])
            if f[1].startswith("preprocess") and f[2] == "RUN"
        ]
        return ids and (work / ".hang_marker").exists() and ids[0]

    jobid = wait_for(running_preprocess, 60, "the first preprocess job to run", proc)
    subprocess.run(["pjdel", jobid], check=True, env=full_env, capture_output=True)
    wait_snakemake(proc, 120)

    preps = [j for j in history(pjm_env) if j["JOB_NAME"].startswith("preprocess")]
    assert [(j["ST"], j["PC"]) for j in preps] == [("CCL", "1"), ("EXT", "0")], preps
    assert (work / target).read_text().strip() == "raw"


def test_job_past_its_elapse_limit_fails_the_run_cleanly(tmp_path, pjm_env):
    """Killed at its elapse limit (1 min, scaled to 3 s), with no retry left."""
    work = toy_workdir(tmp_path)
    pjm_env = {**pjm_env, "PJM_SIM_ELAPSE_SCALE": "0.05"}
    proc = start_snakemake(
        work,
        "results/prep.txt",
        "--profile",
        "profiles/pjm",
        *FAST,
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
    assert not (work / "results" / "prep.txt").exists()  # partial output removed


def test_real_pipeline_through_the_profile(tmp_path, pjm_env):
    work = real_workdir(tmp_path)
    run_snakemake(
        work,
        "--profile",
        "profiles/pjm",
        *FAST,
        "--configfile",
        "config/scheduler-test.yaml",
        env=pjm_env,
        timeout=420,
    )
    jobs = history(pjm_env)
    rules = {j["JOB_NAME"].split(".")[0] for j in jobs}
    assert {"preprocess", "train", "evaluate", "report"} <= rules, jobs
    assert "download" not in rules
    assert all(j["ST"] == "EXT" and j["EC"] == "0" for j in jobs)
    train = next(j for j in jobs if j["JOB_NAME"].startswith("train"))
    assert sim_job(pjm_env, train["JOB_ID"])["L"]["gpu"] == "1"
    assert (work / "results" / "mnist-sample" / "report.html").exists()
