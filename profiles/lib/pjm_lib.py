"""What is specific to Fujitsu PJM (Technical Computing Suite: Fugaku, Wisteria, Genkai).

What clusterjob.py (`clusterjob.py submit|status pjm`, the entry point the
cluster-generic plugin runs) and profiles/pjm/config.yaml need to know about PJM:
its site settings, the pjsub options of a job, and how to read pjsub's and
pjstat's answers. The scheduler-independent part is clusterjob.py. Standard
library only.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

from clusterjob import (
    NAME,
    NAME_FORM,
    Setting,
    SiteSettingError,
    check_resources,
    extra_options,
    format_hms,
    int_resource,
    job_name,
    job_shape,
    query,
    runtime_seconds,
    uses_apptainer,
)
from jobsetup import exports_environment

SCHEDULER = "pjm"
PREFIX = "PJM"  # PJM_PJSUB, PJM_PJSTAT, PJM_PJDEL name other commands; MNIST_PJM_LOGDIR ...
SUBMIT, CANCEL = "pjsub", "pjdel"
# pjsub runs in logs/pjm/, so PJM's <name>.<id>.out/.stats files land there; the job
# itself changes to the workflow directory first thing.
SUBMIT_IN_LOGDIR = True
LOOKS_IN = "pjstat or pjstat -H"

# PJM reads "-L a=1,b=2" and "-x A=1,B=2" as lists: a comma or "=" in a value
# would add resource items or environment variables to the job.
PATHS = r"/[A-Za-z0-9_./-]*(:/[A-Za-z0-9_./-]*)*"
EXTRA = extra_options("pjm", "pjsub")  # MNIST_PJM_EXTRA, split like a shell would
SETTINGS = [
    Setting("MNIST_PJM_RSCGRP", "pjm_rscgrp", NAME, f"a resource group name: {NAME_FORM}"),
    Setting("MNIST_PJM_GPU_RSCGRP", "pjm_gpu_rscgrp", NAME,
            f"a resource group name: {NAME_FORM}"),
    Setting("MNIST_PJM_GROUP", "pjm_group", NAME, f"a group name: {NAME_FORM}"),
    Setting("MNIST_PJM_GFSCACHE", "pjm_gfscache", PATHS,
            "absolute paths joined by ':' (e.g. /vol0004:/vol0005), no commas, '=' or spaces"),
    Setting("--set-resources RULE:pjm_jobenv", "pjm_jobenv", NAME,
            f"a job environment: {NAME_FORM}"),
    EXTRA,
]  # fmt: skip


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
    if res.get("gpu_model"):
        # PJM has no GPU model option: a GPU system's resource group fixes the model.
        raise SiteSettingError(
            f"resource gpu_model={res['gpu_model']!r}: PJM has no request for a GPU model, the "
            "resource group fixes it: set MNIST_PJM_GPU_RSCGRP to the group with that GPU "
            "(train runs there) and leave resources.train.gpu_model empty"
        )
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
    args += EXTRA.options(site)
    return args


def submit_args(props: dict, jobscript_text: str, logdir: str) -> list[str]:
    return build_pjsub_args(props, uses_apptainer(jobscript_text))


def submitted_job_id(proc: subprocess.CompletedProcess) -> str:
    return parse_submit_output(proc.stdout + proc.stderr)


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


def find_job(jobid: str, command: Callable[[str], str]) -> tuple[str, str] | None:
    """(running | success | failed, why) from the live list (pjstat), then the history
    (pjstat -H); None where neither has the job."""
    for history in (False, True):
        cmd = [command("pjstat"), *(["-H"] if history else []), "-v", "--choose", PJSTAT_CHOOSE]
        proc = query([*cmd, jobid])
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.strip()}")
        row = parse_pjstat(proc.stdout).get(jobid)
        if row:
            return snakemake_status(row), f"ended: {row}"
    return None
