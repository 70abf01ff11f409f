"""Pure logic behind the PJM (Fujitsu Technical Computing Suite) profile.

Used by pjm_submit.py, pjm_status.py and pjm_cancel.py, which the
snakemake-executor-plugin-cluster-generic calls as executables. Standard
library only, so it runs with whatever python3 the login node has.

Nothing here goes through a shell: every value that came from the workflow
(config, wildcards, resources) ends up as one element of an argument list.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import time
from pathlib import Path

# --- job properties -----------------------------------------------------------

_PROPS_RE = re.compile(r"^# properties = (.*)$", re.MULTILINE)


def read_job_properties(jobscript_text: str) -> dict:
    """The JSON Snakemake writes into each jobscript ("# properties = {...}")."""
    m = _PROPS_RE.search(jobscript_text)
    if not m:
        raise ValueError("no '# properties = ...' line in the jobscript")
    return json.loads(m.group(1))


_APPTAINER_RE = re.compile(
    r"--(?:software-deployment-method|deployment-method|sdm)((?:\s+[^\s-]\S*)+)"
)


def uses_apptainer(jobscript_text: str) -> bool:
    """True when the job runs with --software-deployment-method apptainer."""
    return any("apptainer" in m.group(1).split() for m in _APPTAINER_RE.finditer(jobscript_text))


# --- pjsub arguments ------------------------------------------------------------

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def job_name(props: dict) -> str:
    """A PJM-safe job name: rule name plus wildcard values, limited to [A-Za-z0-9_.-]."""
    parts = [str(props.get("rule", "snakejob"))]
    parts += [str(v) for v in (props.get("wildcards") or {}).values()]
    name = _NAME_BAD.sub("_", ".".join(parts))
    return name[:63] or "snakejob"


def format_elapse(runtime_min) -> str:
    """Snakemake `runtime` (minutes) -> PJM elapse HH:MM:SS (at least one minute)."""
    seconds = max(60, int(math.ceil(float(runtime_min) * 60)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def _setting(resources: dict, key: str) -> str:
    value = resources.get(key)
    return "" if value is None else str(value).strip()


def build_pjsub_args(props: dict, apptainer: bool = False) -> list[str]:
    """pjsub options for one Snakemake job (without the jobscript path).

    Site settings arrive as resources (set in the profile's default-resources,
    overridable per rule with set-resources):
      pjm_rscgrp    resource group              -> -L rscgrp=
      pjm_group     group charged for the job    -> -g
      pjm_gfscache  volumes for LLIO's cache     -> -x PJM_LLIO_GFSCACHE=
      pjm_jobenv    job environment; default "singularity" when containers
                    are used                      -> -L jobenv=
      pjm_extra     more pjsub options, split like a shell would (no shell runs)
    """
    res = props.get("resources") or {}
    args = ["-N", job_name(props), "-L", "node=1"]
    rscgrp = _setting(res, "pjm_rscgrp")
    if rscgrp:
        args += ["-L", f"rscgrp={rscgrp}"]
    if res.get("runtime") not in (None, ""):
        args += ["-L", f"elapse={format_elapse(res['runtime'])}"]
    gpus = int(res.get("gpu") or 0)
    if gpus > 0:
        # PJM sites with GPUs (e.g. Wisteria-Aquarius, Genkai) take -L gpu=N.
        args += ["-L", f"gpu={gpus}"]
    jobenv = _setting(res, "pjm_jobenv") or ("singularity" if apptainer else "")
    if jobenv:
        args += ["-L", f"jobenv={jobenv}"]
    group = _setting(res, "pjm_group")
    if group:
        args += ["-g", group]
    gfscache = _setting(res, "pjm_gfscache")
    if gfscache:
        args += ["-x", f"PJM_LLIO_GFSCACHE={gfscache}"]
    # -j: stderr into the .out file; -S: write <name>.<id>.stats with the PJM
    # code, which tells why a job ended; -X: pass the submit environment
    # (PATH to python/snakemake) to the job.
    args += ["-j", "-S", "-X"]
    extra = _setting(res, "pjm_extra")
    if extra:
        args += shlex.split(extra)
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


# --- jobs that are nowhere to be seen --------------------------------------------


def missing_for_too_long(state_dir: Path, jobid: str, grace_s: float, now: float | None = None):
    """Remember when a job was first missing from pjstat; True once past grace_s.

    A job can be briefly invisible (just submitted, or between the live list
    and the history). Only a job missing for longer than grace_s counts as lost.
    """
    now = time.time() if now is None else now
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = state_dir / f"{jobid}.missing"
    if not marker.exists():
        marker.write_text(str(now))
        return False
    try:
        first = float(marker.read_text() or now)
    except ValueError:
        first = now
    return now - first > grace_s


def clear_missing(state_dir: Path, jobid: str) -> None:
    (state_dir / f"{jobid}.missing").unlink(missing_ok=True)
