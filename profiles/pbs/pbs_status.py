#!/usr/bin/env python3
"""Print "running", "success" or "failed" for one PBS job id.

Called by snakemake-executor-plugin-cluster-generic as `pbs_status.py JOBID`.
Asks `qstat -x -f -F json JOBID` (-x: finished jobs too, from the job
history): job_state F with Exit_status 0 is success; Exit_status -29 (killed at
its walltime), other non-zero codes and qdel (substate 91) are failures. If
qstat fails (a transient hiccup), the job is reported "running" and the next
poll decides; a job unknown to PBS for longer than MNIST_PBS_MISSING_GRACE
seconds (default 600) is "failed". A qstat that does not exist stops the run.
"""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pbs_lib  # noqa: E402
from clusterjob import clear_missing, grace_seconds, missing_for_too_long, query, status_main  # noqa: E402

QSTAT = os.environ.get("PBS_QSTAT", "qstat")
STATE_DIR = Path(".snakemake/pbs_status")
UNKNOWN_JOB = 153  # qstat's exit code for a job id it does not know (any more)


def status(jobid: str) -> str:
    grace = grace_seconds("MNIST_PBS_MISSING_GRACE")
    try:
        proc = query([QSTAT, "-x", "-f", "-F", "json", jobid])
        if proc.returncode not in (0, UNKNOWN_JOB):
            raise RuntimeError(f"qstat exited {proc.returncode}: {proc.stderr.strip()}")
        job = pbs_lib.parse_qstat_json(proc.stdout, jobid) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, RuntimeError, ValueError) as e:
        print(f"pbs_status: qstat failed, assuming job {jobid} still runs: {e}", file=sys.stderr)
        return "running"
    if job is None:
        if missing_for_too_long(STATE_DIR, jobid, grace):
            print(f"pbs_status: job {jobid} unknown to qstat -x for {grace:.0f}s", file=sys.stderr)
            return "failed"
        return "running"
    clear_missing(STATE_DIR, jobid)
    result, why = pbs_lib.job_status(job)
    if result == "failed":
        print(f"pbs_status: job {jobid} failed: {why}", file=sys.stderr)
    return result


if __name__ == "__main__":
    status_main("pbs_status.py", status)
