#!/usr/bin/env python3
"""Submit one Snakemake jobscript with qsub; print the PBS job id.

Called by snakemake-executor-plugin-cluster-generic as `pbs_submit.py JOBSCRIPT`.
The qsub options come from the job properties Snakemake embeds in the jobscript
(never from a shell-formatted string), see pbs_lib.build_qsub_args; a site
setting PBS would misread stops here, before qsub runs. PBS's own output file
(stdout and stderr of the job) is logs/pbs/<jobid>.OU.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pbs_lib  # noqa: E402
from clusterjob import read_job_properties, run_submit, submit_main  # noqa: E402

QSUB = os.environ.get("PBS_QSUB", "qsub")
LOGDIR = Path(os.environ.get("MNIST_PBS_LOGDIR", "logs/pbs"))


def submit(jobscript: Path) -> str:
    props = read_job_properties(jobscript.read_text())
    qsub_args = pbs_lib.build_qsub_args(props, str(LOGDIR.resolve()) + "/")
    LOGDIR.mkdir(parents=True, exist_ok=True)
    cmd = [QSUB, *qsub_args, str(jobscript)]
    proc = run_submit(cmd)
    if proc.returncode != 0:
        raise ValueError(f"qsub exited {proc.returncode}: {proc.stderr.strip()}\n  command: {cmd}")
    return pbs_lib.parse_submit_output(proc.stdout)


if __name__ == "__main__":
    submit_main("pbs_submit.py", submit)
