"""Real SLURM: a train job killed mid-run is retried with more time and resumes.

See tests/resumecheck.py (the short set-up, its shared body). The long set-up, a training
stopped at its time limits, is Grid Engine's (tests/test_resume_uge.py); SLURM's own stop at
the time limit (SIGTERM, then SIGKILL KillWait later) is tests/test_scheduler_slurm.py's,
and the training's save on SIGTERM tests/test_resume_e2e.py's."""

from __future__ import annotations

import pytest

from resumecheck import killed_and_resumed, minutes
from schedulers.clusters import Slurm
from schedulers.schedtest import wait_for

pytestmark = pytest.mark.scheduler

SLURM = Slurm()


def train_attempts(out: str, env: dict) -> list[tuple[bool, str, float]]:
    """sacct's records (squeue forgets a job MinJobAge, 300 s, after it ended)."""

    def records():
        rows = SLURM.accounted(out, "JobIDRaw,Comment,State,Timelimit")
        rows = [r for r in rows if r[1].startswith("rule_train")]
        return rows if rows and rows[-1][2] == "COMPLETED" else None

    rows = wait_for(records, 60, "sacct records of the train attempts")
    # The killed training failed its job, every one but the last
    assert all(state == "FAILED" for _, _, state, _ in rows[:-1]), rows
    return [
        (state == "COMPLETED", f"{jid} {state} {limit}", minutes(limit))
        for jid, _, state, limit in rows
    ]


def test_slurm_killed_job_is_retried_and_resumes(tmp_path, short_reference):
    SLURM.bring_up()
    if not SLURM.accounting():
        pytest.skip("SLURM accounting (slurmdbd) is not running: slurm_up.sh SLURM_ACCOUNTING=1")
    killed_and_resumed(
        tmp_path, short_reference, train_attempts, "--profile", SLURM.profile, *SLURM.fast,
        env={"MNIST_SLURM_STATUS": "sacct"},
    )  # fmt: skip
