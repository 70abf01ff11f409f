#!/usr/bin/env python3
"""Submit one Snakemake jobscript with pjsub; print the PJM job id.

Called by snakemake-executor-plugin-cluster-generic as `pjm_submit.py JOBSCRIPT`.
The pjsub options come from the job properties Snakemake embeds in the
jobscript (never from a shell-formatted string), see pjm_lib.build_pjsub_args.
pjsub runs in logs/pjm/, so PJM's <name>.<id>.out/.stats files land there;
the job itself changes to the workflow directory first thing.
"""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pjm_lib  # noqa: E402

PJSUB = os.environ.get("PJM_PJSUB", "pjsub")
LOGDIR = Path(os.environ.get("MNIST_PJM_LOGDIR", "logs/pjm"))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: pjm_submit.py JOBSCRIPT", file=sys.stderr)
        return 2
    jobscript = Path(argv[1]).resolve()
    text = jobscript.read_text()
    props = pjm_lib.read_job_properties(text)
    args = [PJSUB, *pjm_lib.build_pjsub_args(props, pjm_lib.uses_apptainer(text)), str(jobscript)]
    LOGDIR.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(args, cwd=LOGDIR, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"pjm_submit: could not run {PJSUB}: {e}", file=sys.stderr)
        return 1
    try:
        jobid = pjm_lib.parse_submit_output(proc.stdout + proc.stderr)
    except ValueError as e:
        print(f"pjm_submit: {e}\n  command: {args}", file=sys.stderr)
        return 1
    print(jobid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
