"""Real SLURM: a train job killed at its time limit is retried with more time and resumes.

See tests/resumecheck.py (the long set-up, its shared body)."""

from __future__ import annotations

import pytest

from resumecheck import minutes, stopped_at_time_limits_and_resumed
from schedulers.clusters import Slurm
from schedulers.schedtest import wait_for

pytestmark = pytest.mark.scheduler

SLURM = Slurm()


def train_attempts(out: str) -> list[tuple[bool, str, float]]:
    """sacct's records (squeue forgets a job MinJobAge, 300 s, after it ended)."""

    def records():
        rows = SLURM.accounted(out, "JobIDRaw,Comment,State,Timelimit")
        rows = [r for r in rows if r[1].startswith("rule_train")]
        return rows if rows and rows[-1][2] == "COMPLETED" else None

    rows = wait_for(records, 60, "sacct records of the train attempts")
    # Killed by SLURM at the time limit, every one but the last
    assert all(state == "TIMEOUT" for _, _, state, _ in rows[:-1]), rows
    return [
        (state == "COMPLETED", f"{jid} {state} {limit}", minutes(limit))
        for jid, _, state, limit in rows
    ]


def test_slurm_time_limit_retry_resumes(tmp_path, resume_reference):
    SLURM.bring_up()
    if not SLURM.accounting():
        pytest.skip("SLURM accounting (slurmdbd) is not running: slurm_up.sh SLURM_ACCOUNTING=1")
    stopped_at_time_limits_and_resumed(
        tmp_path, resume_reference, train_attempts, "--profile", SLURM.profile,
        "--slurm-init-seconds-before-status-checks", "2",
        env={"MNIST_SLURM_STATUS": "sacct"},
    )  # fmt: skip
