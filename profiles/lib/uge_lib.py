"""What is specific to Grid Engine (Altair/Univa Grid Engine, Son of Grid Engine).

What clusterjob.py (`clusterjob.py submit|status uge`, the entry point the
cluster-generic plugin runs) and profiles/uge/config.yaml need to know about Grid
Engine: its site settings, the qsub options of a job, and how to read qsub's,
qstat's and qacct's answers. The scheduler-independent part is clusterjob.py.
Standard library only.

ABCI 2.0's resource types (rt_F, rt_G.small, ...) retired with its Grid Engine
in October 2024: ABCI 3.0 runs PBS Professional, see profiles/pbs.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Callable

from clusterjob import (
    NAME,
    NAME_FORM,
    Setting,
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

SCHEDULER = "uge"
PREFIX = "UGE"  # UGE_QSUB, UGE_QSTAT, UGE_QACCT, UGE_QDEL name other commands; MNIST_UGE_LOGDIR ...
SUBMIT, CANCEL = "qsub", "qdel"
SUBMIT_IN_LOGDIR = False  # -o names the directory
LOOKS_IN = "qstat or qacct"
# Grid Engine sends its warnings (-notify's SIGUSR2, s_rt's SIGUSR1) to every process of the
# job, and kills what is left once the job script has exited: the job's shell and Snakemake
# ignore them (the default would end both at once, and the training with them), so that the
# training, which sets its own handlers, saves its checkpoint and stops, and the job ends.
PRECOMMAND = "trap '' USR1 USR2"

COMPLEX = r"[A-Za-z][A-Za-z0-9_]*"
COMPLEX_FORM = "one complex name of letters, digits and '_' (e.g. mem_free), nothing after it"
EXTRA = extra_options("uge", "qsub")  # MNIST_UGE_EXTRA, split like a shell would
SETTINGS = [
    Setting("MNIST_UGE_MODE", "uge_mode", r"generic",
            "'generic': the ABCI 2.0 'abci' mode is retired, ABCI 3.0 runs PBS: "
            "use profiles/pbs with MNIST_PBS_MODE=abci", "generic"),
    Setting("MNIST_UGE_PROJECT", "uge_project", NAME, f"a project name: {NAME_FORM}"),
    Setting("MNIST_UGE_QUEUE", "uge_queue", r"[A-Za-z0-9_.*-]+(@[A-Za-z0-9_.*-]+)?",
            "one queue, optionally @host (e.g. gpu.q or all.q@node1), no commas"),
    Setting("MNIST_UGE_PE", "uge_pe", NAME, f"a parallel environment: {NAME_FORM}", "smp"),
    Setting("MNIST_UGE_MPI_PE", "uge_mpi_pe", NAME,
            f"a parallel environment for several processes (Open MPI): {NAME_FORM}", "mpi"),
    Setting("MNIST_UGE_MEM_RESOURCE", "uge_mem_resource", f"none|{COMPLEX}",
            f"'none' or {COMPLEX_FORM}", "mem_free"),
    Setting("MNIST_UGE_GPU_RESOURCE", "uge_gpu_resource", COMPLEX, COMPLEX_FORM, "gpu"),
    # The site's string complex for a GPU model (Grid Engine has no standard one), e.g. gpu_type
    Setting("MNIST_UGE_GPU_MODEL_RESOURCE", "uge_gpu_model_resource", COMPLEX, COMPLEX_FORM),
    EXTRA,
]  # fmt: skip


def build_qsub_args(props: dict, logdir: str) -> list[str]:
    """qsub options for one Snakemake job (without the jobscript path).

    Every job: -N -cwd -j y -S /bin/bash -V -o <logdir>, -l h_rt=<runtime>, -notify.
    Site settings arrive as resources (SETTINGS), checked here again, since
    set-resources may change them per rule:
      uge_pe            parallel environment for threads > 1 (default "smp")
      uge_mpi_pe        parallel environment for a job of several processes
                        (resources tasks > 1 or nodes > 1; default "mpi"): it gets
                        -pe <uge_mpi_pe> <tasks x threads>, and mpirun starts the
                        processes on the hosts Grid Engine lists in $PE_HOSTFILE
      uge_mem_resource  complex for memory, requested per slot (default
                        "mem_free"; "none" to send none). Not h_vmem: that caps
                        virtual memory, which TensorFlow exceeds easily.
      uge_gpu_resource  consumable complex for GPUs (default "gpu")
      uge_gpu_model_resource  string complex for resources gpu_model (no default:
                        a gpu_model without it is refused, naming the setting)
      uge_queue         -q;  uge_project  -P
      uge_extra         more qsub options, split like a shell would (no shell runs)
    """
    res = props.get("resources") or {}
    site = check_resources(SETTINGS, res)
    threads = max(1, int(props.get("threads") or 1))
    gpus = int_resource(res, "gpu")

    # -cwd/-j y/-S as in most site guides; -V passes PATH etc. to the job.
    args = ["-N", job_name(props), "-cwd", "-j", "y", "-S", "/bin/bash", "-V", "-o", logdir]
    if not exports_environment(res):  # MNIST_JOB_ENV=clean: the set-up alone
        args.remove("-V")
    seconds = runtime_seconds(res)
    if seconds is not None:
        args += ["-l", f"h_rt={format_hms(seconds)}"]
    # -notify: SIGUSR2 to every process of the job before Grid Engine kills it, at h_rt and
    # on qdel, the queue's `notify` time (default 60 s) ahead; training saves its checkpoint
    # and stops on it. Without it, h_rt is a SIGKILL with no warning. (Not s_rt: on Son of
    # Grid Engine 8.1.9 its SIGUSR1 came on time, but h_rt was then enforced only by the
    # qmaster, ~50 s late; profiles/README.md, "Time limits".)
    args.append("-notify")
    shape = job_shape(res)
    pe = site.get("uge_pe", "smp")
    slots = 1
    if shape.distributed:
        # One slot per thread of every process; mem_mb is per node.
        slots = threads * shape.tasks
        args += ["-pe", site.get("uge_mpi_pe", "mpi"), str(slots)]
    elif threads > 1 and pe:
        slots = threads
        args += ["-pe", pe, str(threads)]
    mem_res = site.get("uge_mem_resource", "mem_free")
    mem_mb = int_resource(res, "mem_mb")
    if mem_res != "none" and mem_mb:
        # Grid Engine multiplies per-slot requests by the slot count (per host).
        args += ["-l", f"{mem_res}={math.ceil(mem_mb * shape.nodes / slots)}M"]
    if gpus > 0:
        args += ["-l", f"{site.get('uge_gpu_resource', 'gpu')}={gpus}"]
    model = gpu_model_request(
        {**res, **site}, gpus, "Grid Engine", "MNIST_UGE_GPU_MODEL_RESOURCE:uge_gpu_model_resource"
    )
    if model:
        args += ["-l", model]
    for key, flag in (("uge_queue", "-q"), ("uge_project", "-P")):
        if key in site:
            args += [flag, site[key]]
    args += EXTRA.options(site)
    return args


def submit_args(props: dict, jobscript_text: str, logdir: str) -> list[str]:
    return build_qsub_args(props, logdir)


def submitted_job_id(proc: subprocess.CompletedProcess) -> str:
    try:
        return parse_submit_output(proc.stdout)
    except ValueError as e:
        raise ValueError(f"{e} {proc.stderr.strip()}") from None


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


def find_job(jobid: str, command: Callable[[str], str]) -> tuple[str, str] | None:
    """(running | success | failed, why); None where neither qstat nor qacct knows the job.

    A job listed by qstat is running (or failed, in an error state such as Eqw);
    a finished job is judged by its accounting record (qacct -j).
    """
    proc = query([command("qstat")])
    if proc.returncode != 0:
        raise RuntimeError(f"qstat exited {proc.returncode}: {proc.stderr.strip()}")
    state = parse_qstat(proc.stdout).get(jobid)
    if state is not None:
        return qstat_status(state), f"in error state {state}"
    proc = query([command("qacct"), "-j", jobid])
    record = parse_qacct(proc.stdout) if proc.returncode == 0 else None
    if record is None:
        return None
    why = f"failed={record.get('failed')} exit_status={record.get('exit_status')}"
    return qacct_status(record), why
