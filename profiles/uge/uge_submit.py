#!/usr/bin/env python3
"""Submit one Snakemake jobscript with qsub; print the Grid Engine job id.

Called by snakemake-executor-plugin-cluster-generic as `uge_submit.py JOBSCRIPT`.
The qsub options come from the job properties Snakemake embeds in the
jobscript (never from a shell-formatted string), see uge_lib.build_qsub_args;
a site setting Grid Engine would misread stops here, before qsub runs.
Job logs (stdout+stderr) go to logs/uge/<name>.o<jobid>.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import uge_lib  # noqa: E402
from clusterjob import read_job_properties, run_submit, submit_main  # noqa: E402

QSUB = os.environ.get("UGE_QSUB", "qsub")
LOGDIR = Path(os.environ.get("MNIST_UGE_LOGDIR", "logs/uge"))


def submit(jobscript: Path) -> str:
    props = read_job_properties(jobscript.read_text())
    qsub_args = uge_lib.build_qsub_args(props, str(LOGDIR.resolve()) + "/")
    LOGDIR.mkdir(parents=True, exist_ok=True)
    cmd = [QSUB, *qsub_args, str(jobscript)]
    proc = run_submit(cmd)
    try:
        return uge_lib.parse_submit_output(proc.stdout)
    except ValueError as e:
        raise ValueError(f"{e} {proc.stderr.strip()}\n  command: {cmd}") from None


if __name__ == "__main__":
    submit_main("uge_submit.py", submit)
