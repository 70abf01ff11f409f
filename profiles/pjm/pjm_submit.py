#!/usr/bin/env python3
"""Submit one Snakemake jobscript with pjsub; print the PJM job id.

Called by snakemake-executor-plugin-cluster-generic as `pjm_submit.py JOBSCRIPT`.
The pjsub options come from the job properties Snakemake embeds in the
jobscript (never from a shell-formatted string), see pjm_lib.build_pjsub_args;
a site setting PJM would misread stops here, before pjsub runs.
pjsub runs in logs/pjm/, so PJM's <name>.<id>.out/.stats files land there;
the job itself changes to the workflow directory first thing.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pjm_lib  # noqa: E402
from clusterjob import read_job_properties, run_submit, submit_main, uses_apptainer  # noqa: E402

PJSUB = os.environ.get("PJM_PJSUB", "pjsub")
LOGDIR = Path(os.environ.get("MNIST_PJM_LOGDIR", "logs/pjm"))


def submit(jobscript: Path) -> str:
    text = jobscript.read_text()
    props = read_job_properties(text)
    cmd = [PJSUB, *pjm_lib.build_pjsub_args(props, uses_apptainer(text)), str(jobscript)]
    LOGDIR.mkdir(parents=True, exist_ok=True)
    proc = run_submit(cmd, cwd=LOGDIR)
    try:
        return pjm_lib.parse_submit_output(proc.stdout + proc.stderr)
    except ValueError as e:
        raise ValueError(f"{e}\n  command: {cmd}") from None


if __name__ == "__main__":
    submit_main("pjm_submit.py", submit)
