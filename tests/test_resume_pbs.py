"""Real OpenPBS: a train job killed mid-run is retried with more walltime and resumes.

See tests/resumecheck.py (the short set-up); PBS's own kill at the walltime (SIGTERM, then
SIGKILL kill_delay later) in tests/test_scheduler_pbs.py."""

from __future__ import annotations

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
from schedulers.schedtest import bring_up
from test_scheduler_pbs import FAST, PBS_ENV, jobs_by_rule

pytestmark = pytest.mark.scheduler


def test_pbs_killed_job_is_retried_and_resumes(tmp_path, short_reference):
    bring_up("pbs")
    work = short_workdir(tmp_path / "pipeline")  # snakemake's output goes to tmp_path
    out = kill_once_checkpointed(
        work, "--profile", "profiles/pbs", *FAST, *SHORT_RETRIES, env=PBS_ENV
    )
    trains = jobs_by_rule(out)["train"]  # PBS's own records, in submission order
    assert_attempts([(j["Exit_status"] == 0, f"{j['id']} {j['Exit_status']}") for j in trains])
    # runtime x attempt: walltime of 10, 20 (, 30) minutes
    walltimes = [j["Resource_List"]["walltime"] for j in trains]
    assert walltimes == [f"00:{10 * n}:00" for n in range(1, len(trains) + 1)], walltimes
    assert_resumed_as_uninterrupted(work, short_reference, RUN, SHORT_EPOCHS)
