"""Real OpenPBS: a train job killed at its walltime is retried with more time and resumes.

See tests/resumecheck.py; PBS's side of it (SIGTERM, then SIGKILL kill_delay later) in
tests/test_scheduler_pbs.py."""

from __future__ import annotations

import pytest

from resumecheck import (
    EPOCHS,
    RETRIES,
    RUN,
    assert_attempts,
    assert_resumed_as_uninterrupted,
    pipeline,
)
from schedulers.schedtest import bring_up, run_snakemake
from test_scheduler_pbs import FAST, PBS_ENV, jobs_by_rule

pytestmark = pytest.mark.scheduler


def test_pbs_walltime_retry_resumes(tmp_path, resume_reference):
    bring_up("pbs")
    work = pipeline(tmp_path)
    out = run_snakemake(
        work, "--profile", "profiles/pbs", *FAST, *RETRIES, env=PBS_ENV, timeout=1800
    )
    trains = jobs_by_rule(out)["train"]  # PBS's own records, in submission order
    assert_attempts([(j["Exit_status"] == 0, f"{j['id']} {j['Exit_status']}") for j in trains])
    # Stopped at the walltime: PBS's -29, or the training's own exit after SIGTERM (128 + 15).
    assert all(j["Exit_status"] != 0 for j in trains[:-1]), trains
    # runtime x attempt: walltime of 1, 2, (3) minutes
    walltimes = [j["Resource_List"]["walltime"] for j in trains]
    assert walltimes == [f"00:0{n}:00" for n in range(1, len(trains) + 1)], walltimes
    assert_resumed_as_uninterrupted(work, resume_reference, RUN, EPOCHS)
