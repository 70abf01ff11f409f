"""What is specific to Fujitsu PJM (Technical Computing Suite: Fugaku, Wisteria, Genkai).

Used by pjm_submit.py, pjm_status.py and pjm_cancel.py (called by the
snakemake-executor-plugin-cluster-generic) and by this profile's config.yaml;
the scheduler-independent part is ../lib/clusterjob.py. Standard library only.
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from clusterjob import (  # noqa: E402
    NAME,
    NAME_FORM,
    Setting,
    check_extra,
    check_resources,
    format_hms,
    int_resource,
    job_name,
    job_shape,
    runtime_seconds,
    settings_from_environment,
)
from jobsetup import exports_environment  # noqa: E402

# PJM reads "-L a=1,b=2" and "-x A=1,B=2" as lists: a comma or "=" in a value
# would add resource items or environment variables to the job.
PATHS = r"/[A-Za-z0-9_./-]*(:/[A-Za-z0-9_./-]*)*"
SETTINGS = [
    Setting("MNIST_PJM_RSCGRP", "pjm_rscgrp", NAME, f"a resource group name: {NAME_FORM}"),
    Setting("MNIST_PJM_GPU_RSCGRP", "pjm_gpu_rscgrp", NAME,
            f"a resource group name: {NAME_FORM}"),
    Setting("MNIST_PJM_GROUP", "pjm_group", NAME, f"a group name: {NAME_FORM}"),
    Setting("MNIST_PJM_GFSCACHE", "pjm_gfscache", PATHS,
            "absolute paths joined by ':' (e.g. /vol0004:/vol0005), no commas, '=' or spaces"),
    Setting("--set-resources RULE:pjm_jobenv", "pjm_jobenv", NAME,
            f"a job environment: {NAME_FORM}"),
    Setting("MNIST_PJM_EXTRA", "pjm_extra", r"[^\x00-\x1f\x7f]*", "pjsub options on one line"),
]  # fmt: skip


def site_settings(environ=os.environ) -> dict[str, str]:
    """The profile's site settings from the environment, checked (config.yaml calls this)."""
    values = settings_from_environment(SETTINGS, environ)
    check_extra("MNIST_PJM_EXTRA", values.get("pjm_extra", ""))
    return values


def build_pjsub_args(props: dict, apptainer: bool = False) -> list[str]:
    """pjsub options for one Snakemake job (without the jobscript path).

    Site settings arrive as resources (SETTINGS), checked here again, since
    set-resources may change them per rule:
      pjm_rscgrp    resource group              -> -L rscgrp=
      pjm_group     group charged for the job    -> -g
      pjm_gfscache  volumes for LLIO's cache     -> -x PJM_LLIO_GFSCACHE=
      pjm_jobenv    job environment; default "singularity" when containers
                    are used                      -> -L jobenv=
      pjm_extra     more pjsub options, split like a shell would (no shell runs)
    A job of several processes (resources tasks > 1 or nodes > 1: a distributed
    training that mpiexec starts) gets -L node=<nodes> and --mpi proc=<tasks>.
    """
    res = props.get("resources") or {}
    site = check_resources(SETTINGS, res)
    shape = job_shape(res)
    args = ["-N", job_name(props), "-L", f"node={shape.nodes}"]
    if shape.distributed:
        args += ["--mpi", f"proc={shape.tasks}"]
    if "pjm_rscgrp" in site:
        args += ["-L", f"rscgrp={site['pjm_rscgrp']}"]
    seconds = runtime_seconds(res)
    if seconds is not None:
        args += ["-L", f"elapse={format_hms(seconds)}"]
    gpus = int_resource(res, "gpu")
    if gpus > 0:
        # PJM sites with GPUs (e.g. Wisteria-Aquarius, Genkai) take -L gpu=N.
        args += ["-L", f"gpu={gpus}"]
    jobenv = site.get("pjm_jobenv") or ("singularity" if apptainer else "")
    if jobenv:
        args += ["-L", f"jobenv={jobenv}"]
    if "pjm_group" in site:
        args += ["-g", site["pjm_group"]]
    if "pjm_gfscache" in site:
        args += ["-x", f"PJM_LLIO_GFSCACHE={site['pjm_gfscache']}"]
    # -j: stderr into the .out file; -S: write <name>.<id>.stats with the PJM
    # code, which tells why a job ended; -X: pass the submit environment
    # (PATH to python/snakemake) to the job.
    args += ["-j", "-S"] + (["-X"] if exports_environment(res) else [])  # MNIST_JOB_ENV
    args += check_extra("MNIST_PJM_EXTRA", site.get("pjm_extra", ""))
    return args


_SUBMITTED_RE = re.compile(r"\[INFO\] PJM 0000 pjsub Job (\d+(?:\[\d+\])?) submitted\.")


def parse_submit_output(output: str) -> str:
    """Job id from pjsub's "[INFO] PJM 0000 pjsub Job 12345 submitted."."""
    m = _SUBMITTED_RE.search(output)
    if not m:
        raise ValueError(f"pjsub did not report a submitted job: {output.strip()!r}")
    return m.group(1)


# --- pjstat parsing -------------------------------------------------------------

# pjstat -v --choose jid,st,ec,pc  prints a header line and one line per job.
PJSTAT_CHOOSE = "jid,st,ec,pc"

RUNNING_STATES = {"ACC", "QUE", "RNA", "RNP", "HLD", "RUN", "RNO", "RNE", "SPP", "SPD", "RSM"}
FAILED_STATES = {"ERR", "CCL", "RJT"}


def parse_pjstat(output: str) -> dict[str, dict[str, str]]:
    """{job id: {column: value}} from pjstat table output (header names as keys)."""
    header: list[str] | None = None
    rows: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "JOB_ID":
            header = fields
            continue
        if header is None or len(fields) != len(header):
            continue  # messages, or rows whose columns contain spaces
        row = dict(zip(header, fields, strict=True))
        rows[row["JOB_ID"]] = row
    return rows


def snakemake_status(row: dict[str, str]) -> str:
    """Map one pjstat row to Snakemake's "running" / "success" / "failed"."""
    state = row.get("ST", "")
    if state in FAILED_STATES:
        return "failed"
    if state == "EXT":
        ec = row.get("EC", "0")
        pc = row.get("PC", "0")
        ok = ec == "0" and pc in ("0", "-", "")
        return "success" if ok else "failed"
    # RUNNING_STATES, and anything unknown: wait for the next poll.
    return "running"
