"""Real Grid Engine: a train job reaching its h_rt gets -notify's warning, saves, and resumes.

The long training of tests/resumecheck.py (the SLURM test's, sharing its reference run) with
no timed or epoch-end checkpoints: the only checkpoint a retry can resume from is the one
written on the warning. Found on this build (Son of Grid Engine 8.1.9, Debian's gridengine):
with -notify, every process of the job gets SIGUSR2 at h_rt and SIGKILL the queue's `notify`
time (60 s here) later; without it, h_rt is a SIGKILL with no warning (profiles/README.md,
"Time limits"). Grid Engine's own kills of the toy workflow: tests/test_scheduler_uge.py.
"""

from __future__ import annotations

import re

import pytest

from resumecheck import CONFIG, stopped_at_time_limits_and_resumed
from schedulers.clusters import GridEngine

pytestmark = pytest.mark.scheduler

UGE = GridEngine()
# Saved only when a signal stops the training.
WARNING_ONLY = CONFIG.replace(
    "checkpoint: {every_minutes: 0.1}", "checkpoint: {every_minutes: 0, every_epochs: 0}"
)


def train_attempts(out: str) -> list[tuple[bool, str, float]]:
    """qacct's records; the time limit is the h_rt asked for, with -notify."""
    trains = [job for job in UGE.jobs(out, {}) if job.rule == "train"]
    attempts = []
    for job in trains:
        limit = int(re.search(r"h_rt=(\d+)", job.record["category"]).group(1))
        record = f"{job.id} failed={job.record['failed']} exit_status={job.record['exit_status']}"
        attempts.append((job.ok, record, limit / 60))
    # Every stopped attempt ran to its h_rt (the warning came there; Grid Engine was seen a
    # second early) and ended before the kill `notify` (60 s) later: the training stopped
    # itself once it had saved, and the job ended with it.
    for job, (_, _, limit) in zip(trains[:-1], attempts, strict=False):
        wallclock = float(re.match(r"[\d.]+", job.record["ru_wallclock"]).group())
        assert 60 * limit - 5 <= wallclock < 60 * limit + 55, (limit, job)
    return attempts


def test_grid_engine_time_limit_warning_saves_and_the_retry_resumes(tmp_path, resume_reference):
    UGE.bring_up()
    assert WARNING_ONLY != CONFIG
    stopped_at_time_limits_and_resumed(
        tmp_path, resume_reference, train_attempts, "--profile", UGE.profile,
        "--seconds-between-status-checks", "1", config=WARNING_ONLY,
    )  # fmt: skip
