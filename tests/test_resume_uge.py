"""Real Grid Engine: a train job killed mid-run is retried with a longer h_rt and resumes.

See tests/resumecheck.py (the short set-up); Grid Engine's own kills in
tests/test_scheduler_uge.py."""

from __future__ import annotations

import re
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
from schedulers.schedtest import bring_up, wait_for

pytestmark = pytest.mark.scheduler


def test_grid_engine_killed_job_is_retried_and_resumes(tmp_path, short_reference):
    bring_up("gridengine")
    work = short_workdir(tmp_path / "pipeline")  # snakemake's output goes to tmp_path
    out = kill_once_checkpointed(
        work,
        "--profile",
        "profiles/uge",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "10",
        *SHORT_RETRIES,
    )
    jobids = re.findall(r"Submitted (?:group )?job \d+ with external jobid '(\d+)'", out)

    def qacct(jobid):
        r = subprocess.run(["qacct", "-j", jobid], capture_output=True, text=True)
        fields = dict(
            (line.partition(" ")[0], line.partition(" ")[2].strip())
            for line in r.stdout.splitlines()
        )
        return fields if "exit_status" in fields else None

    records = [wait_for(lambda j=j: qacct(j), 30, f"qacct record of job {j}") for j in jobids]
    trains = [r for r in records if r["jobname"].startswith("train")]
    assert_attempts(
        [
            (
                r["failed"] == "0" and r["exit_status"] == "0",
                f"{r['jobnumber']} failed={r['failed']} exit_status={r['exit_status']}",
            )
            for r in trains
        ]
    )
    # runtime x attempt: h_rt of 600, 1200 (, 1800) seconds
    limits = [re.search(r"h_rt=(\d+)", r["category"]).group(1) for r in trains]
    assert limits == [str(600 * n) for n in range(1, len(trains) + 1)], limits
    assert_resumed_as_uninterrupted(work, short_reference, RUN, SHORT_EPOCHS)
