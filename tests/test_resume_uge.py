"""Real Grid Engine: a train job killed at its h_rt is retried with more time and resumes.

See tests/resumecheck.py."""

from __future__ import annotations

import re
import subprocess

import pytest

from resumecheck import (
    EPOCHS,
    RETRIES,
    RUN,
    assert_attempts,
    assert_resumed_as_uninterrupted,
    pipeline,
)
from schedulers.schedtest import bring_up, run_snakemake, wait_for

pytestmark = pytest.mark.scheduler


def test_grid_engine_h_rt_retry_resumes(tmp_path, resume_reference):
    bring_up("gridengine")
    work = pipeline(tmp_path)
    out = run_snakemake(
        work,
        "--profile",
        "profiles/uge",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "10",
        *RETRIES,
        timeout=1800,
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
                f"{r['jobnumber']} failed={r['failed']}",
            )
            for r in trains
        ]
    )
    # Killed by the scheduler at h_rt (failed 37: "qmaster enforced h_rt ... limit").
    assert all(
        r["failed"].startswith("37") or r["exit_status"] in ("137", "143", "138")
        for r in trains[:-1]
    ), trains
    # runtime x attempt: h_rt of 60, 120, (180) seconds
    limits = [re.search(r"h_rt=(\d+)", r["category"]).group(1) for r in trains]
    assert limits == [str(60 * n) for n in range(1, len(trains) + 1)], limits
    assert_resumed_as_uninterrupted(work, resume_reference, RUN, EPOCHS)
