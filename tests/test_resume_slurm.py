"""Real SLURM: a train job killed at its time limit is retried with more time and resumes.

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


def test_slurm_time_limit_retry_resumes(tmp_path, resume_reference):
    bring_up("slurm")
    accounting = subprocess.run(
        ["sacctmgr", "-n", "list", "cluster"], capture_output=True, text=True
    ).stdout.strip()
    if not accounting:
        pytest.skip("SLURM accounting (slurmdbd) is not running: slurm_up.sh SLURM_ACCOUNTING=1")
    work = pipeline(tmp_path)
    out = run_snakemake(
        work,
        "--profile",
        "profiles/slurm",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--latency-wait",
        "10",
        *RETRIES,
        env={"MNIST_SLURM_STATUS": "sacct"},
        timeout=1800,
    )
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)

    def train_records():
        listing = subprocess.run(
            [
                "sacct",
                "-X",
                "--parsable2",
                "--noheader",
                "--name",
                run_id,
                "--format=JobIDRaw,Comment,State,Timelimit",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [line.split("|") for line in listing.splitlines()]
        rows = [r for r in rows if r[1].startswith("rule_train")]
        return rows if rows and rows[-1][2] == "COMPLETED" else None

    rows = wait_for(train_records, 60, "sacct records of the train attempts")
    assert_attempts(
        [(state == "COMPLETED", f"{jid} {state} {limit}") for jid, _, state, limit in rows]
    )
    assert all(state == "TIMEOUT" for _, _, state, _ in rows[:-1]), rows
    # runtime x attempt: 1, 2, (3) minutes
    assert [limit for *_, limit in rows] == [f"00:0{n}:00" for n in range(1, len(rows) + 1)]
    assert_resumed_as_uninterrupted(work, resume_reference, RUN, EPOCHS)
