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
import subprocess

import pytest

from resumecheck import (
    CONFIG,
    EPOCHS,
    RETRIES,
    RUN,
    assert_attempts,
    assert_resumed_as_uninterrupted,
    pipeline,
)
from schedulers.schedtest import bring_up, run_snakemake, wait_for

pytestmark = pytest.mark.scheduler

# Saved only when a signal stops the training.
WARNING_ONLY = CONFIG.replace(
    "checkpoint: {every_minutes: 0.1}", "checkpoint: {every_minutes: 0, every_epochs: 0}"
)


def qacct(jobid: str) -> dict[str, str] | None:
    r = subprocess.run(["qacct", "-j", jobid], capture_output=True, text=True)
    fields = dict(
        (line.partition(" ")[0], line.partition(" ")[2].strip()) for line in r.stdout.splitlines()
    )
    return fields if "exit_status" in fields else None


def test_grid_engine_time_limit_warning_saves_and_the_retry_resumes(tmp_path, resume_reference):
    bring_up("gridengine")
    assert WARNING_ONLY != CONFIG
    work = pipeline(tmp_path)
    (work / "config" / "resume-test.yaml").write_text(WARNING_ONLY)
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
    # runtime x attempt: h_rt of 60, 120 (, 180 ...) seconds, each with -notify
    limits = [int(re.search(r"h_rt=(\d+)", r["category"]).group(1)) for r in trains]
    assert limits == [60 * n for n in range(1, len(trains) + 1)], limits
    # Every stopped attempt ran to its h_rt (the warning came there; Grid Engine was seen a
    # second early) and ended before the kill `notify` (60 s) later: the training stopped
    # itself once it had saved, and the job ended with it.
    for record, limit in zip(trains[:-1], limits, strict=False):
        wallclock = float(re.match(r"[\d.]+", record["ru_wallclock"]).group())
        assert limit - 5 <= wallclock < limit + 55, (limit, record)
    assert_resumed_as_uninterrupted(work, resume_reference, RUN, EPOCHS)
