"""Start one training as several processes: the launcher's side.

A training spread over several processes (``distribution: {mode: processes}``) runs as
one scheduler job with ``processes`` tasks. ``train.py`` calls :func:`run_workers`, which
starts the workers with the launcher the job's environment offers:

* inside a SLURM job: ``srun --overlap --ntasks=N --nodes=K`` (``--overlap``: the
  SLURM executor plugin may already run the rule inside a one-task job step, whose
  CPUs a second step could otherwise never get: it would wait forever);
* inside a PBS or Grid Engine job: Open MPI's ``mpirun -np N`` (on the nodes of
  ``$PBS_NODEFILE`` or the Grid Engine parallel environment);
* inside a Fujitsu PJM job: ``mpiexec -n N`` (Fujitsu MPI);
* anywhere else: N local subprocesses (coordinator on 127.0.0.1).

It picks a free port on this node as the coordinator (``MNISTFLOW_COORDINATOR``), waits
for the workers, stops the others when one fails, forwards SIGTERM/SIGINT/SIGUSR1 (a
scheduler's warning before its time limit: the workers save a checkpoint) and returns
the worst exit code. Each worker learns its index, the process count and the coordinator
from the variables its launcher set with mnistflow.place.this_process.

What the job asks the scheduler for (``nodes``, ``tasks``, ``gpu``) comes from
mnistflow.distribution_config.job_resources.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from mnistflow.place import COORDINATOR, COUNT, INDEX, LaunchError

# Forces a launcher (local, srun, mpirun, mpiexec) instead of the one the job offers.
LAUNCHER = "MNISTFLOW_LAUNCHER"
LAUNCHERS = ("local", "srun", "mpirun", "mpiexec")
# A scheduler's warnings before its kill (mnistflow.stopping saves a checkpoint on each):
# SIGTERM (SLURM, PBS), SIGXCPU (PJM), SIGUSR1/SIGUSR2 (Grid Engine), SIGINT (Ctrl-C).
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGXCPU)
# Run before each MPI worker: SIGKILL when its parent (mpirun, or Open MPI's daemon on
# another node) dies, then the worker itself (PR_SET_PDEATHSIG survives exec).
GUARD = (
    "import ctypes,os,sys;ctypes.CDLL(None).prctl(1,9);"
    "os.getppid()==1 and sys.exit(137);os.execvp(sys.argv[1],sys.argv[1:])"
)
# Variables the MPI launchers pass on to workers on other nodes (-x NAME=value).
_PASSED_ON = re.compile(
    r"(MNISTFLOW_.*|PATH|PYTHONPATH|LD_LIBRARY_PATH|VIRTUAL_ENV|CONDA_PREFIX|KERAS_.*|"
    r"XLA_.*|JAX_.*|TF_.*|CUDA_.*|OMP_NUM_THREADS|HOME|LANG|LC_ALL)"
)


def free_port(host: str = "") -> int:
    """A TCP port nobody listens on now (process 0 binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def choose_launcher(env: Mapping[str, str]) -> str:
    """local, srun, mpirun or mpiexec, from MNISTFLOW_LAUNCHER or the job's scheduler."""
    forced = env.get(LAUNCHER, "").strip()
    if forced:
        if forced not in LAUNCHERS:
            raise LaunchError(
                f"{LAUNCHER}={forced!r} is not one of {', '.join(LAUNCHERS)}; unset it to let "
                "the job's scheduler decide"
            )
        return forced
    if env.get("SLURM_JOB_ID"):
        return "srun"
    if env.get("PJM_JOBID"):
        return "mpiexec"
    if env.get("PBS_JOBID") or env.get("PE_HOSTFILE"):
        return "mpirun"
    return "local"


def launcher_command(
    launcher: str, count: int, argv: Sequence[str], env: Mapping[str, str], nodes: int = 1
) -> list[str]:
    """The command that starts `count` copies of argv as one job's processes."""
    if launcher == "srun":
        # --overlap: the plugin runs the rule in a one-task step holding the job's CPUs; a
        # new step without it waits for them forever (SLURM 22.05, tests/test_launch.py).
        # --kill-on-bad-exit: one failing task ends the others.
        return [
            "srun", "--overlap", f"--ntasks={count}", f"--nodes={nodes}",
            "--kill-on-bad-exit=1", "--export=ALL", *argv,
        ]  # fmt: skip
    if launcher in ("mpirun", "mpiexec"):
        cmd = [launcher, "-n" if launcher == "mpiexec" else "-np", str(count)]
        if launcher == "mpirun":
            # --bind-to none: each worker may use all the cores it was given (threads).
            cmd += ["--bind-to", "none"]
            if env.get("PBS_NODEFILE") and os.path.exists(env["PBS_NODEFILE"]):
                # PBS lists each node once per mpiprocs: Open MPI without PBS (tm) support
                # learns the nodes and slots from it. Grid Engine's PE_HOSTFILE Open MPI
                # reads by itself.
                cmd += ["--hostfile", env["PBS_NODEFILE"]]
        for name in sorted(env):
            if _PASSED_ON.fullmatch(name):
                cmd += ["-x", f"{name}={env[name]}"]
        return [*cmd, *argv]
    raise LaunchError(f"no launcher {launcher!r}")


def _die_with_parent() -> None:
    """In a local worker: SIGKILL when the launcher dies (Linux), so none is left behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _exit_code(returncode: int) -> int:
    """A shell's view: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _stop(procs: Sequence[subprocess.Popen], grace: float) -> None:
    """SIGTERM the processes still running, SIGKILL those still there after grace."""
    for p in procs:
        if p.poll() is None:
            _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL)
            p.wait()


def _signal(proc: subprocess.Popen, signum: int) -> None:
    """Signal a worker or launcher; mpirun, alone in its session, with what it started."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
    except ProcessLookupError:
        pass


def run_workers(
    count: int,
    argv: list[str],
    env: Mapping[str, str] | None = None,
    nodes: int = 1,
    *,
    stop_grace: float = 30.0,
    log=None,
) -> int:
    """Run `count` copies of argv as one training's processes; the worst exit code.

    The worst: 0 when all succeeded, else the code of the worker that failed first (the
    cause; the others then end by our SIGTERM), else the highest.

    env: the workers' environment (default: this process's). MNISTFLOW_COORDINATOR is
    set to this node and a free port, MNISTFLOW_PROCESS_COUNT to count (a scheduler that
    starts a different number is an error in this_process). When one worker fails, the
    others are stopped (SIGTERM, SIGKILL stop_grace seconds later). The warnings this
    process receives (FORWARDED_SIGNALS) are passed on to the workers: to srun SIGINT and
    SIGXCPU as SIGTERM (srun reads a lone SIGINT as "print status"), to mpirun/mpiexec
    all but SIGUSR2 as SIGUSR1 (Open MPI forwards it as it is, while it answers SIGTERM
    by killing its processes within a second). When this process is killed, its workers
    die with it (PR_SET_PDEATHSIG), none is left running.
    """
    if count < 1 or nodes < 1:
        raise LaunchError(f"run_workers needs count >= 1 and nodes >= 1, not {count}, {nodes}")
    if nodes > count:
        raise LaunchError(f"{count} processes cannot spread over {nodes} nodes: nodes <= processes")
    base = dict(os.environ if env is None else env)
    for name in (INDEX, COUNT, COORDINATOR):
        base.pop(name, None)
    launcher = choose_launcher(base)
    if launcher == "local" and nodes > 1:
        raise LaunchError(
            f"distribution.nodes={nodes} needs a scheduler job that spans {nodes} nodes "
            "(SLURM, PBS, Grid Engine or PJM, through its profile); without one, all processes "
            "run on this machine: set nodes: 1"
        )
    if launcher != "local" and shutil.which(launcher, path=base.get("PATH")) is None:
        raise LaunchError(
            f"{launcher} is needed to start {count} processes in this job but is not on PATH: "
            + (
                "install Open MPI (Debian: apt-get install openmpi-bin) or load its module"
                if launcher in ("mpirun", "mpiexec")
                else "run inside the SLURM job with SLURM's commands on PATH"
            )
        )
    host = "127.0.0.1" if launcher == "local" else socket.gethostname()
    base[COORDINATOR] = f"{host}:{free_port('127.0.0.1' if launcher == 'local' else '')}"
    base[COUNT] = str(count)
    if launcher in ("mpirun", "mpiexec") and os.geteuid() == 0:
        # Open MPI refuses to run as root (containers, test clusters) unless told twice.
        base.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        base.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))

    mpi = launcher in ("mpirun", "mpiexec")
    if launcher == "local":
        commands = [(list(argv), {**base, INDEX: str(i)}) for i in range(count)]
    else:
        guarded = [sys.executable, "-c", GUARD, *argv] if mpi else list(argv)
        commands = [(launcher_command(launcher, count, guarded, base, nodes), base)]
    shown = [
        a.split("=", 1)[0] + "=..." if "=" in a and a[:1] != "-" else a for a in commands[0][0]
    ]
    say(
        f"launch: {count} processes on {nodes} node(s) with {launcher}, coordinator "
        f"{base[COORDINATOR]}: {' '.join(shown)}"
    )

    procs: list[subprocess.Popen] = []
    received: list[int] = []

    def forward(signum, _frame):
        received.append(signum)
        sent = signum
        if launcher == "srun" and signum in (signal.SIGINT, signal.SIGXCPU):
            sent = signal.SIGTERM
        elif mpi and signum != signal.SIGUSR2:
            sent = signal.SIGUSR1
        for p in procs:
            if p.poll() is None:
                # srun and mpirun pass it on to their processes. A worker may get the
                # same warning twice (from the scheduler too): a stop request is a flag.
                p.send_signal(sent)

    previous = {}
    try:
        for signum in FORWARDED_SIGNALS:
            previous[signum] = signal.signal(signum, forward)
    except ValueError:  # not the main thread: no forwarding
        previous = {}
    try:
        for cmd, cmd_env in commands:
            procs.append(
                subprocess.Popen(
                    cmd,
                    env=cmd_env,
                    # Local workers and srun stay in our process group and session, where
                    # every scheduler's signal reaches them. mpirun does not: Open MPI
                    # answers a SIGTERM by killing its processes within a second, before
                    # they can save a checkpoint (tried: Open MPI 4.1). It gets our
                    # SIGUSR1 instead; when we die, it dies (and, by GUARD, its workers).
                    start_new_session=mpi,
                    preexec_fn=_die_with_parent,
                )
            )
        failed: subprocess.Popen | None = None
        while any(p.poll() is None for p in procs):
            failing = next((p for p in procs if p.poll() not in (None, 0)), None)
            if failing is not None and not received:
                failed = failing
                # (after a forwarded signal every worker is stopping already: let them
                # save their checkpoints instead of signalling them again)
                say(
                    f"launch: a worker exited {_exit_code(failing.returncode)}: stopping the "
                    "other processes"
                )
                _stop(procs, stop_grace)
                break
            time.sleep(0.1)
    except BaseException:
        _stop(procs, stop_grace)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    codes = [_exit_code(p.returncode) for p in procs]
    # The cause, not the stopped ones' 143/137: the code of the worker that failed first.
    worst = _exit_code(failed.returncode) if failed is not None else max(codes)
    say(
        f"launch: workers exited {codes}"
        + (f" after {', '.join(signal.Signals(s).name for s in received)}" if received else "")
    )
    return worst
