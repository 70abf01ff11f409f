"""The PJM simulator: a job killed mid-run is retried with a longer elapse limit and resumes.

See tests/resumecheck.py (the short set-up); the simulator's kill at the elapse limit in
tests/test_scheduler_pjm.py."""

from __future__ import annotations

import os
import subprocess

import pytest

from resumecheck import (
    RUN,
    SHORT_EPOCHS,
    SHORT_RETRIES,
    assert_attempts,
    assert_resumed_as_uninterrupted,
    kill_once_checkpointed,
    short_workdir,
)
from schedulers.schedtest import PJM_SIM_DIR

pytestmark = pytest.mark.scheduler


def test_pjm_killed_job_is_retried_and_resumes(tmp_path, short_reference):
    env = {
        "PATH": f"{PJM_SIM_DIR}{os.pathsep}{os.environ['PATH']}",
        "PJM_SIM_DIR": str(tmp_path / "pjm-state"),
        "PJM_SIM_KILL_GRACE": "10",
    }
    work = short_workdir(tmp_path / "pipeline")  # snakemake's output goes to tmp_path
    kill_once_checkpointed(
        work,
        "--profile",
        "profiles/pjm",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "10",
        *SHORT_RETRIES,
        env=env,
    )
    listing = subprocess.run(
        ["pjstat", "-H", "-v", "--choose", "jid,jnam,st,ec,pc,elpl"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.splitlines()
    header = listing[0].split()
    jobs = [dict(zip(header, line.split(), strict=True)) for line in listing[1:]]
    trains = [j for j in jobs if j["JOB_NAME"].startswith("train")]
    assert_attempts([(j["EC"] == "0" and j["PC"] == "0", str(j)) for j in trains])
    # runtime x attempt: elapse limit of 10, 20 (, 30) minutes
    limits = [j["ELAPSE_LIM"] for j in trains]  # HHHH:MM:SS
    assert [int(h) * 60 + int(m) for h, m, _ in (t.split(":") for t in limits)] == [
        10 * n for n in range(1, len(trains) + 1)
    ], limits
    assert_resumed_as_uninterrupted(work, short_reference, RUN, SHORT_EPOCHS)
