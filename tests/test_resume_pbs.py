"""Real OpenPBS: a train job killed mid-run is retried with more walltime and resumes.

See tests/resumecheck.py (the short set-up, its shared body); PBS's own kill at the walltime
(SIGTERM, then SIGKILL kill_delay later) in tests/test_scheduler_pbs.py."""

from __future__ import annotations

import pytest

from resumecheck import killed_and_resumed, minutes
from schedulers.schedtest import bring_up
from test_scheduler_pbs import FAST, PBS_ENV, jobs_by_rule

pytestmark = pytest.mark.scheduler


def train_attempts(out: str, env: dict) -> list[tuple[bool, str, float]]:
    """PBS's own records (qstat -x), in submission order."""
    attempts = []
    for job in jobs_by_rule(out)["train"]:
        walltime = minutes(job["Resource_List"]["walltime"])
        attempts.append((job["Exit_status"] == 0, f"{job['id']} {job['Exit_status']}", walltime))
    return attempts


def test_pbs_killed_job_is_retried_and_resumes(tmp_path, short_reference):
    bring_up("pbs")
    killed_and_resumed(
        tmp_path, short_reference, train_attempts, "--profile", "profiles/pbs", *FAST, env=PBS_ENV
    )
