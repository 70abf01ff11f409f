"""Pure logic behind the UGE / SGE (Grid Engine) profile.

Used by uge_submit.py, uge_status.py and uge_cancel.py, which the
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

_PROPS_RE = re.compile(r"^# properties = (.*)$", re.MULTILINE)


def read_job_properties(jobscript_text: str) -> dict:
    """The JSON Snakemake writes into each jobscript ("# properties = {...}")."""
    m = _PROPS_RE.search(jobscript_text)
    if not m:
        raise ValueError("no '# properties = ...' line in the jobscript")
    return json.loads(m.group(1))


_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def job_name(props: dict) -> str:
    """Grid Engine job name: rule plus wildcard values, [A-Za-z0-9_.-], starts with a letter."""
    parts = [str(props.get("rule", "snakejob"))]
    parts += [str(v) for v in (props.get("wildcards") or {}).values()]
    name = _NAME_BAD.sub("_", ".".join(parts))
    if not name[:1].isalpha():
        name = "j" + name
    return name[:63]


def format_h_rt(runtime_min) -> str:
    """Snakemake `runtime` (minutes) -> h_rt HH:MM:SS (at least one minute)."""
    seconds = max(60, int(math.ceil(float(runtime_min) * 60)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def abci_resource_type(gpus: int) -> str:
    """ABCI-style resource type for a job: CPU-only, one GPU, or a full node."""
    if gpus <= 0:
        return "rt_C.small"
    if gpus == 1:
        return "rt_G.small"
    return "rt_F"


def _setting(resources: dict, key: str, default: str = "") -> str:
    value = resources.get(key)
    return default if value is None else str(value).strip()


def build_qsub_args(props: dict, logdir: str) -> list[str]:
    """qsub options for one Snakemake job (without the jobscript path).

    Site settings arrive as resources (profile default-resources, overridable
    per rule with set-resources):
      uge_mode          "generic" (default) or "abci"
      uge_pe            parallel environment for threads > 1 (default "smp")
      uge_mem_resource  complex for memory, requested per slot (default
                        "mem_free"; "" to send none). Not h_vmem: that caps
                        virtual memory, which TensorFlow exceeds easily.
      uge_gpu_resource  consumable complex for GPUs (default "gpu")
      uge_rt            abci mode: resource type to request instead of the
                        automatic rt_C.small / rt_G.small / rt_F
      uge_queue         -q;  uge_project  -P;  uge_group  -g (ABCI group)
      uge_extra         more qsub options, split like a shell would (no shell runs)
    """
    res = props.get("resources") or {}
    threads = max(1, int(props.get("threads") or 1))
    gpus = int(res.get("gpu") or 0)
    mode = _setting(res, "uge_mode", "generic").lower()

    # -cwd/-j y/-S as in ABCI job scripts; -V passes PATH etc. to the job.
    args = ["-N", job_name(props), "-cwd", "-j", "y", "-S", "/bin/bash", "-V", "-o", logdir]
    if res.get("runtime") not in (None, ""):
        args += ["-l", f"h_rt={format_h_rt(res['runtime'])}"]

    if mode == "abci":
        # A resource type fixes cores, memory and GPUs; nothing else is asked.
        rtype = _setting(res, "uge_rt") or abci_resource_type(gpus)
        args += ["-l", f"{rtype}=1"]
    elif mode == "generic":
        pe = _setting(res, "uge_pe", "smp")
        if threads > 1 and pe:
            args += ["-pe", pe, str(threads)]
        mem_res = _setting(res, "uge_mem_resource", "mem_free")
        mem_mb = res.get("mem_mb")
        if mem_res and mem_mb:
            # Grid Engine multiplies per-slot requests by the slot count.
            slots = threads if (threads > 1 and pe) else 1
            args += ["-l", f"{mem_res}={math.ceil(int(mem_mb) / slots)}M"]
        if gpus > 0:
            args += ["-l", f"{_setting(res, 'uge_gpu_resource', 'gpu')}={gpus}"]
    else:
        raise ValueError(f"uge_mode must be 'generic' or 'abci', not {mode!r}")

    for key, flag in (("uge_queue", "-q"), ("uge_project", "-P"), ("uge_group", "-g")):
        value = _setting(res, key)
        if value:
            args += [flag, value]
    extra = _setting(res, "uge_extra")
    if extra:
        args += shlex.split(extra)
    return args


_SUBMITTED_RE = re.compile(r"Your job(?:-array)? (\d+)")


def parse_submit_output(output: str) -> str:
    """Job id from qsub's 'Your job 123 ("name") has been submitted' (or -terse '123')."""
    m = _SUBMITTED_RE.search(output)
    if m:
        return m.group(1)
    stripped = output.strip()
    if stripped.isdigit():
        return stripped
    raise ValueError(f"qsub did not report a submitted job: {stripped!r}")


def parse_qstat(output: str) -> dict[str, str]:
    """{job id: state} from plain `qstat` output (job-ID prior name user state ...)."""
    states = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0].isdigit():
            states[fields[0]] = fields[4]
    return states


def qstat_status(state: str) -> str:
    """Snakemake status of a job still listed by qstat."""
    # E (error, e.g. Eqw) never runs without manual qmod -cj: count it as failed.
    return "failed" if "E" in state else "running"


def parse_qacct(output: str) -> dict[str, str] | None:
    """The last accounting record of `qacct -j ID` as {field: value}."""
    records = output.split("=" * 62)
    for rec in reversed(records):
        fields = {}
        for line in rec.splitlines():
            key, _, value = line.partition(" ")
            if key:
                fields[key] = value.strip()
        if "exit_status" in fields:
            return fields
    return None


def qacct_status(record: dict[str, str]) -> str:
    """success only when Grid Engine saw no failure and the job script exited 0."""
    failed = record.get("failed", "0").split()[0]
    exit_status = record.get("exit_status", "0").split()[0]
    return "success" if failed == "0" and exit_status == "0" else "failed"


def missing_for_too_long(state_dir: Path, jobid: str, grace_s: float, now: float | None = None):
    """Remember when a job was first missing; True once it has been gone for grace_s.

    Between leaving qstat and appearing in qacct a job can be invisible for a
    moment; only a job missing for longer than grace_s counts as lost.
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
