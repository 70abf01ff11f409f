"""The PJM simulator: a job killed mid-run is retried with a longer elapse limit and resumes.

See tests/resumecheck.py (the short set-up, its shared body); the simulator's kill at the
elapse limit in tests/test_scheduler_pjm.py."""

from __future__ import annotations

import os
import subprocess

import pytest

from resumecheck import killed_and_resumed, minutes
from schedulers.schedtest import PJM_SIM_DIR

pytestmark = pytest.mark.scheduler

FAST = ["--seconds-between-status-checks", "1", "--latency-wait", "10"]


def train_attempts(out: str, env: dict) -> list[tuple[bool, str, float]]:
    """The simulator's history (pjstat -H), in submission order."""
    listing = subprocess.run(
        ["pjstat", "-H", "-v", "--choose", "jid,jnam,st,ec,pc,elpl"],
        capture_output=True, text=True, check=True, env={**os.environ, **env},
    ).stdout.splitlines()  # fmt: skip
    header = listing[0].split()
    jobs = [dict(zip(header, line.split(), strict=True)) for line in listing[1:]]
    return [
        (j["EC"] == "0" and j["PC"] == "0", str(j), minutes(j["ELAPSE_LIM"]))
        for j in jobs
        if j["JOB_NAME"].startswith("train")
    ]


def test_pjm_killed_job_is_retried_and_resumes(tmp_path, short_reference):
    env = {
        "PATH": f"{PJM_SIM_DIR}{os.pathsep}{os.environ['PATH']}",
        "PJM_SIM_DIR": str(tmp_path / "pjm-state"),
        "PJM_SIM_KILL_GRACE": "10",
    }
    killed_and_resumed(
        tmp_path, short_reference, train_attempts, "--profile", "profiles/pjm", *FAST, env=env
    )
