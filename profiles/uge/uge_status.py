#!/usr/bin/env python3
"""Print "running", "success" or "failed" for one Grid Engine job id.

Called by snakemake-executor-plugin-cluster-generic as `uge_status.py JOBID`.
A job listed by qstat is running (or failed, in an error state such as Eqw);
a finished job is judged by its accounting record (qacct -j). If qstat/qacct
fail (a transient hiccup), the job is reported "running" and the next poll
decides; a qstat that does not exist stops the run. A job found nowhere for
longer than MNIST_UGE_MISSING_GRACE seconds (default 600) is "failed".
"""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import uge_lib  # noqa: E402
from clusterjob import clear_missing, grace_seconds, missing_for_too_long, query, status_main  # noqa: E402

QSTAT = os.environ.get("UGE_QSTAT", "qstat")
QACCT = os.environ.get("UGE_QACCT", "qacct")
STATE_DIR = Path(".snakemake/uge_status")


def status(jobid: str) -> str:
    grace = grace_seconds("MNIST_UGE_MISSING_GRACE")
    try:
        proc = query([QSTAT])
        if proc.returncode != 0:
            raise RuntimeError(f"qstat exited {proc.returncode}: {proc.stderr.strip()}")
        state = uge_lib.parse_qstat(proc.stdout).get(jobid)
        if state is not None:
            clear_missing(STATE_DIR, jobid)
            result = uge_lib.qstat_status(state)
            if result == "failed":
                print(f"uge_status: job {jobid} is in error state {state}", file=sys.stderr)
            return result
        proc = query([QACCT, "-j", jobid])
        record = uge_lib.parse_qacct(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, RuntimeError) as e:
        print(f"uge_status: query failed, assuming job {jobid} still runs: {e}", file=sys.stderr)
        return "running"
    if record is None:
        if missing_for_too_long(STATE_DIR, jobid, grace):
            print(
                f"uge_status: job {jobid} in neither qstat nor qacct for {grace:.0f}s",
                file=sys.stderr,
            )
            return "failed"
        return "running"
    clear_missing(STATE_DIR, jobid)
    result = uge_lib.qacct_status(record)
    if result == "failed":
        print(
            f"uge_status: job {jobid} failed={record.get('failed')} "
            f"exit_status={record.get('exit_status')}",
            file=sys.stderr,
        )
    return result


if __name__ == "__main__":
    status_main("uge_status.py", status)
