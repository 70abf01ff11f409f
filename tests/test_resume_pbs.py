"""Real OpenPBS: a train job killed mid-run is retried with more walltime and resumes.

See tests/resumecheck.py (the short set-up, its shared body); PBS's own kill at the walltime
(SIGTERM, then SIGKILL kill_delay later) in tests/test_scheduler_pbs.py."""

from __future__ import annotations

import pytest

from resumecheck import killed_and_resumed, minutes
from schedulers.clusters import OpenPBS

pytestmark = pytest.mark.scheduler

PBS = OpenPBS()


def train_attempts(out: str, env: dict) -> list[tuple[bool, str, float]]:
    """PBS's own records (qstat -x), in submission order."""
    trains = [job for job in PBS.jobs(out, env) if job.rule == "train"]
    return [
        (
            job.ok,
            f"{job.id} {job.record['Exit_status']}",
            minutes(job.record["Resource_List"]["walltime"]),
        )
        for job in trains
    ]


def test_pbs_killed_job_is_retried_and_resumes(tmp_path, short_reference):
    PBS.bring_up()
    killed_and_resumed(
        tmp_path, short_reference, train_attempts, "--profile", PBS.profile, *PBS.fast,
        env=PBS.env(tmp_path),
    )  # fmt: skip
