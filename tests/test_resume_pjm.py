"""The PJM simulator: a job killed mid-run is retried with a longer elapse limit and resumes.

See tests/resumecheck.py (the short set-up, its shared body); the simulator's kill at the
elapse limit in tests/test_scheduler_pjm.py."""

from __future__ import annotations

import pytest

from resumecheck import killed_and_resumed, minutes
from schedulers.clusters import PJM

pytestmark = pytest.mark.scheduler

SIMULATOR = PJM(kill_grace=10)


def train_attempts(out: str, env: dict) -> list[tuple[bool, str, float]]:
    """The simulator's history (pjstat -H), in submission order."""
    return [
        (job.ok and job.record["PC"] == "0", str(job.record), minutes(job.record["ELAPSE_LIM"]))
        for job in SIMULATOR.jobs(out, env)
        if job.rule == "train"
    ]


def test_pjm_killed_job_is_retried_and_resumes(tmp_path, short_reference):
    killed_and_resumed(
        tmp_path, short_reference, train_attempts, "--profile", SIMULATOR.profile,
        *SIMULATOR.fast, env=SIMULATOR.env(tmp_path),
    )  # fmt: skip
