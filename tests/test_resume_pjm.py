"""The PJM simulator: a job killed at its elapse limit is retried with more time and resumes.

See tests/resumecheck.py."""

from __future__ import annotations

import os
import subprocess

import pytest

from resumecheck import (
    EPOCHS,
    RETRIES,
    RUN,
    assert_attempts,
    assert_resumed_as_uninterrupted,
    pipeline,
)
from schedulers.schedtest import PJM_SIM_DIR, run_snakemake

pytestmark = pytest.mark.scheduler


def test_pjm_elapse_retry_resumes(tmp_path, resume_reference):
    env = {
        "PATH": f"{PJM_SIM_DIR}{os.pathsep}{os.environ['PATH']}",
        "PJM_SIM_DIR": str(tmp_path / "pjm-state"),
        "PJM_SIM_KILL_GRACE": "10",
    }
    work = pipeline(tmp_path)
    run_snakemake(
        work,
        "--profile",
        "profiles/pjm",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "10",
        *RETRIES,
        env=env,
        timeout=1800,
    )
    listing = subprocess.run(
        ["pjstat", "-H", "-v", "--choose", "jid,jnam,st,ec,pc"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.splitlines()
    header = listing[0].split()
    jobs = [dict(zip(header, line.split(), strict=True)) for line in listing[1:]]
    trains = [j for j in jobs if j["JOB_NAME"].startswith("train")]
    assert_attempts([(j["EC"] == "0" and j["PC"] == "0", str(j)) for j in trains])
    assert all(j["PC"] == "11" for j in trains[:-1]), trains  # 11: elapse limit exceeded
    assert_resumed_as_uninterrupted(work, resume_reference, RUN, EPOCHS)
