#!/usr/bin/env python3
"""Submit one Snakemake jobscript with qsub; print the Grid Engine job id.

Called by snakemake-executor-plugin-cluster-generic as `uge_submit.py JOBSCRIPT`.
The qsub options come from the job properties Snakemake embeds in the
jobscript (never from a shell-formatted string), see uge_lib.build_qsub_args.
Job logs (stdout+stderr) go to logs/uge/<name>.o<jobid>.
"""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import uge_lib  # noqa: E402

QSUB = os.environ.get("UGE_QSUB", "qsub")
LOGDIR = Path(os.environ.get("MNIST_UGE_LOGDIR", "logs/uge"))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: uge_submit.py JOBSCRIPT", file=sys.stderr)
        return 2
    jobscript = Path(argv[1]).resolve()
    props = uge_lib.read_job_properties(jobscript.read_text())
    LOGDIR.mkdir(parents=True, exist_ok=True)
    try:
        qsub_args = uge_lib.build_qsub_args(props, str(LOGDIR.resolve()) + "/")
    except ValueError as e:
        print(f"uge_submit: {e}", file=sys.stderr)
        return 1
    args = [QSUB, *qsub_args, str(jobscript)]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"uge_submit: could not run {QSUB}: {e}", file=sys.stderr)
        return 1
    try:
        jobid = uge_lib.parse_submit_output(proc.stdout)
    except ValueError as e:
        print(f"uge_submit: {e} {proc.stderr.strip()}\n  command: {args}", file=sys.stderr)
        return 1
    print(jobid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
