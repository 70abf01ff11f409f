"""What is specific to PBS Professional / OpenPBS (ABCI 3.0 and many university clusters).

What clusterjob.py (`clusterjob.py submit|status pbs`, the entry point the
cluster-generic plugin runs) and profiles/pbs/config.yaml need to know about PBS:
its site settings, the qsub options of a job, and how to read qsub's and qstat's
answers. The scheduler-independent part is clusterjob.py. Standard library only.
"""

from __future__ import annotations

import json
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
    gpu_model_request,
    int_resource,
    job_name,
    job_shape,
    query,
    runtime_seconds,
)
from jobsetup import exports_environment

SCHEDULER = "pbs"
PREFIX = "PBS"  # PBS_QSUB, PBS_QSTAT, PBS_QDEL name other commands; MNIST_PBS_LOGDIR ...
SUBMIT, CANCEL = "qsub", "qdel"
SUBMIT_IN_LOGDIR = False  # -o names the directory
LOOKS_IN = "qstat -x"

EXTRA = extra_options("pbs", "qsub")  # MNIST_PBS_EXTRA, split like a shell would
SETTINGS = [
    Setting("MNIST_PBS_MODE", "pbs_mode", r"generic|abci", "'generic' or 'abci'", "generic"),
    Setting("MNIST_PBS_QUEUE", "pbs_queue", NAME, f"a queue name: {NAME_FORM}"),
    Setting("MNIST_PBS_PROJECT", "pbs_project", NAME, f"a project (ABCI group): {NAME_FORM}"),
    Setting("MNIST_PBS_ACCOUNT", "pbs_account", NAME, f"an account string: {NAME_FORM}"),
    Setting("MNIST_PBS_GPU_RESOURCE", "pbs_gpu_resource", r"[A-Za-z][A-Za-z0-9_]*",
            "a resource name of letters, digits and '_' (e.g. ngpus)", "ngpus"),
    # generic mode: the site's string resource for a GPU model (no standard one), e.g. gpu_model
    Setting("MNIST_PBS_GPU_MODEL_RESOURCE", "pbs_gpu_model_resource", r"[A-Za-z][A-Za-z0-9_]*",
            "a resource name of letters, digits and '_' (e.g. gpu_model)"),
    # abci mode: the queue per rule instead of the automatic rt_HC / rt_HG / rt_HF
    # (set with --set-resources train:pbs_rt=rt_HF; no environment variable).
    Setting("--set-resources RULE:pbs_rt", "pbs_rt", NAME, f"a queue name: {NAME_FORM}"),
    EXTRA,
]  # fmt: skip


ABCI_NEEDS_GROUP = (
    "MNIST_PBS_MODE=abci needs your ABCI group: set MNIST_PBS_PROJECT (qsub -P), e.g. gaa50000"
)


def check_site(values: dict[str, str]) -> None:
    """What clusterjob.site_settings checks beyond each value's form."""
    if values.get("pbs_mode") == "abci" and "pbs_project" not in values:
        raise SiteSettingError(ABCI_NEEDS_GROUP)


def abci_queue(gpus: int) -> str:
    """ABCI 3.0 resource type (a queue) from the GPUs a job asks for."""
    if gpus <= 0:
        return "rt_HC"  # 32 cores, no GPU
    if gpus == 1:
        return "rt_HG"  # 16 cores, 1 H200
    return "rt_HF"  # a whole node: 192 cores, 8 H200


def build_qsub_args(props: dict, logdir: str) -> list[str]:
    """qsub options for one Snakemake job (without the jobscript path).

    The site settings arrive as resources (SETTINGS), each checked here again:
    set-resources may change them per rule.
      generic: -l select=1:ncpus=<threads>:mem=<mem_mb>mb[:ngpus=<gpu>], -q/-P/-A;
               gpu_model (with MNIST_PBS_GPU_MODEL_RESOURCE=R): [:R=<gpu_model>]
      abci:    -q rt_HC|rt_HG|rt_HF (from gpu, or pbs_rt), -P <group>, -l select=1;
               no gpu_model: ABCI 3.0's resource types fix the GPU
    Both: -N <rule.wildcards> -l walltime=<runtime> -j oe -o <logdir> -V.
    A job of several processes (resources tasks > 1 or nodes > 1, a distributed
    training that mpirun starts) asks for one chunk per node, each with its processes:
      generic: select=<nodes>:ncpus=<threads x tasks/nodes>:mpiprocs=<tasks/nodes>
               [:mem=<mem_mb>mb][:ngpus=<gpu>]   (mem_mb and gpu per node)
      abci:    select=<nodes>:mpiprocs=<tasks/nodes>
    PBS then lists each node once per mpiprocs in $PBS_NODEFILE, Open MPI's host file.
    """
    res = props.get("resources") or {}
    site = check_resources(SETTINGS, res)
    mode = site.get("pbs_mode", "generic")
    threads = max(1, int(props.get("threads") or 1))
    gpus = int_resource(res, "gpu")
    mem_mb = int_resource(res, "mem_mb")
    shape = job_shape(res)
    mpiprocs = f":mpiprocs={shape.per_node}" if shape.distributed else ""

    # -o a directory: PBS names the file <jobid>.OU; -V passes PATH etc. to the job,
    # which starts in $HOME and changes to the workflow directory itself.
    args = ["-N", job_name(props), "-j", "oe", "-o", logdir, "-V"]
    if not exports_environment(res):  # MNIST_JOB_ENV=clean: the set-up alone
        args.remove("-V")
    if mode == "abci":
        if res.get("gpu_model"):
            raise SiteSettingError(
                f"resource gpu_model={res['gpu_model']!r}: with MNIST_PBS_MODE=abci the resource "
                "type (rt_HG, rt_HF) fixes the GPU (ABCI 3.0: H200); leave "
                "resources.train.gpu_model empty"
            )
        # The queue fixes cores, memory and GPUs of the node (ABCI 3.0 user guide).
        # Only whole nodes (rt_HF) span several nodes.
        queue = site.get("pbs_rt") or (abci_queue(gpus) if shape.nodes == 1 else "rt_HF")
        if "pbs_project" not in site:
            raise SiteSettingError(ABCI_NEEDS_GROUP)
        args += ["-q", queue, "-P", site["pbs_project"], "-l", f"select={shape.nodes}{mpiprocs}"]
    else:
        select = f"select={shape.nodes}:ncpus={threads * shape.per_node}{mpiprocs}"
        if mem_mb > 0:
            select += f":mem={mem_mb}mb"
        if gpus > 0:
            select += f":{site.get('pbs_gpu_resource', 'ngpus')}={gpus}"
        model = gpu_model_request(
            {**res, **site}, gpus, "PBS", "MNIST_PBS_GPU_MODEL_RESOURCE:pbs_gpu_model_resource"
        )
        if model:
            select += f":{model}"
        args += ["-l", select]
        for key, flag in (("pbs_queue", "-q"), ("pbs_project", "-P")):
            if key in site:
                args += [flag, site[key]]
    if "pbs_account" in site:
        args += ["-A", site["pbs_account"]]
    seconds = runtime_seconds(res)
    if seconds is not None:
        args += ["-l", f"walltime={format_hms(seconds)}"]
    args += EXTRA.options(site)
    return args


def submit_args(props: dict, jobscript_text: str, logdir: str) -> list[str]:
    return build_qsub_args(props, logdir)


def submitted_job_id(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode != 0:
        raise ValueError(f"qsub exited {proc.returncode}: {proc.stderr.strip()}")
    return parse_submit_output(proc.stdout)


def parse_submit_output(output: str) -> str:
    """qsub prints only the job id, e.g. "12.vm" or "4321.pbs1" (OpenPBS and PBS Pro)."""
    lines = output.strip().splitlines()
    if len(lines) == 1 and lines[0] and not any(c.isspace() for c in lines[0]):
        return lines[0]
    raise ValueError(f"qsub did not report a submitted job: {output.strip()!r}")


# substate 91: TERMINATED, a job ended by qdel (Exit_status may still be 0).
SUBSTATE_DELETED = 91
# Exit_status -29: JOB_EXEC_KILL_WALLTIME, killed at its walltime.
EXIT_WALLTIME = -29


def parse_qstat_json(output: str, jobid: str) -> dict | None:
    """The record of one job from `qstat -x -f -F json <id>` (None if absent)."""
    # strict=False: PBS copies control characters of -V variables into strings.
    jobs = json.loads(output, strict=False).get("Jobs") or {}
    if jobid in jobs:
        return jobs[jobid]
    # qstat may answer with the full server name (12.vm.example.org for 12.vm).
    seq = jobid.split(".")[0]
    return next((job for key, job in jobs.items() if key.split(".")[0] == seq), None)


def job_status(job: dict) -> tuple[str, str]:
    """(running | success | failed, why) for one job record of qstat -x -f -F json."""
    state = job.get("job_state", "")
    if state not in ("F", "X"):
        # Q, H, W, T, S, R, B, and E (exiting: Exit_status may be set, wait for F).
        return "running", ""
    exit_status = job.get("Exit_status")
    substate = job.get("substate")
    comment = job.get("comment", "")
    if substate == SUBSTATE_DELETED or "terminated by" in comment:
        return "failed", f"deleted (qdel): {comment}"
    if exit_status == EXIT_WALLTIME:
        return "failed", f"killed at its walltime: {comment}"
    if exit_status == 0:
        return "success", ""
    return "failed", f"Exit_status {exit_status}: {comment}"


UNKNOWN_JOB = 153  # qstat's exit code for a job id it does not know (any more)


def find_job(jobid: str, command: Callable[[str], str]) -> tuple[str, str] | None:
    """(running | success | failed, why) from `qstat -x -f -F json JOBID`; None if unknown.

    -x: finished jobs too, from the job history. job_state F with Exit_status 0 is
    success; Exit_status -29 (killed at its walltime), other non-zero codes and
    qdel (substate 91) are failures.
    """
    proc = query([command("qstat"), "-x", "-f", "-F", "json", jobid])
    if proc.returncode not in (0, UNKNOWN_JOB):
        raise RuntimeError(f"qstat exited {proc.returncode}: {proc.stderr.strip()}")
    job = parse_qstat_json(proc.stdout, jobid) if proc.returncode == 0 else None
    return None if job is None else job_status(job)
