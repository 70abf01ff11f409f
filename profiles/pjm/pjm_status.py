#!/usr/bin/env python3
"""Print "running", "success" or "failed" for one PJM job id.

Called by snakemake-executor-plugin-cluster-generic as `pjm_status.py JOBID`.
Looks at the live list (pjstat) first, then the history (pjstat -H). If pjstat
fails (a transient hiccup), the job is reported "running" and the next poll
decides; a pjstat that does not exist stops the run. A job missing from both
lists for longer than MNIST_PJM_MISSING_GRACE seconds (default 600) is "failed".
"""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pjm_lib  # noqa: E402
from clusterjob import clear_missing, grace_seconds, missing_for_too_long, query, status_main  # noqa: E402

PJSTAT = os.environ.get("PJM_PJSTAT", "pjstat")
STATE_DIR = Path(".snakemake/pjm_status")


def lookup(jobid: str, history: bool) -> dict | None:
    cmd = [PJSTAT, *(["-H"] if history else []), "-v", "--choose", pjm_lib.PJSTAT_CHOOSE, jobid]
    proc = query(cmd)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.strip()}")
    return pjm_lib.parse_pjstat(proc.stdout).get(jobid)


def status(jobid: str) -> str:
    grace = grace_seconds("MNIST_PJM_MISSING_GRACE")
    try:
        row = lookup(jobid, history=False) or lookup(jobid, history=True)
    except (OSError, subprocess.TimeoutExpired, RuntimeError) as e:
        print(f"pjm_status: pjstat failed, assuming job {jobid} still runs: {e}", file=sys.stderr)
        return "running"
    if row is None:
        if missing_for_too_long(STATE_DIR, jobid, grace):
            print(f"pjm_status: job {jobid} not in pjstat for {grace:.0f}s", file=sys.stderr)
            return "failed"
        return "running"
    clear_missing(STATE_DIR, jobid)
    result = pjm_lib.snakemake_status(row)
    if result == "failed":
        print(f"pjm_status: job {jobid} ended: {row}", file=sys.stderr)
    return result


if __name__ == "__main__":
    status_main("pjm_status.py", status)
