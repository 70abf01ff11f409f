"""Which process of a training am I: index, count and coordinator, from the environment.

A training spread over several processes (``distribution: {mode: processes}``) is started
by mnistflow.launch.run_workers with the launcher its job offers (our local one, srun,
mpirun or mpiexec). Each worker calls :func:`this_process` to learn its index, the process
count and process 0's host:port from the variables that launcher set.
Standard library only: the scheduler tests' toy workflow imports it without the others.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

INDEX = "MNISTFLOW_PROCESS_INDEX"
COUNT = "MNISTFLOW_PROCESS_COUNT"
COORDINATOR = "MNISTFLOW_COORDINATOR"
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})")

FIX = (
    "start the training's processes with mnistflow.launch.run_workers (workflow/scripts/"
    "train.py does this for distribution: {mode: processes}), or set MNISTFLOW_PROCESS_INDEX, "
    "MNISTFLOW_PROCESS_COUNT and MNISTFLOW_COORDINATOR=host:port yourself"
)


class LaunchError(RuntimeError):
    """The processes of a training cannot find each other; the message names the fix."""


@dataclass(frozen=True)
class Process:
    """One process of a training: its index, the process count, process 0's host:port."""

    index: int
    count: int
    coordinator: str | None

    @property
    def is_first(self) -> bool:
        """Process 0 writes the outputs."""
        return self.index == 0


def _int(env: Mapping[str, str], name: str, source: str) -> int:
    raw = env[name]
    try:
        return int(raw.strip())
    except ValueError:
        raise LaunchError(
            f"{name}={raw!r} (set by {source}) is not a whole number: {FIX}"
        ) from None


def _first(env: Mapping[str, str], *names: str) -> str | None:
    return next((name for name in names if env.get(name, "").strip()), None)


def _from_scheduler(env: Mapping[str, str]) -> tuple[int, int, str] | None:
    """(index, count, source) from the variables a launcher sets, or None.

    Open MPI (mpirun, Fujitsu's mpiexec) and PMI first: a SLURM batch step sets
    SLURM_PROCID=0 and SLURM_NTASKS=<all tasks> for every process started in it, so
    SLURM's variables count only inside an srun step (SLURM_STEP_ID set).
    """
    if _first(env, "OMPI_COMM_WORLD_RANK"):
        count = "OMPI_COMM_WORLD_SIZE"
        if not _first(env, count):
            raise LaunchError(f"OMPI_COMM_WORLD_RANK is set but {count} is not: {FIX}")
        source = "Open MPI (OMPI_COMM_WORLD_RANK/SIZE)"
        return (_int(env, "OMPI_COMM_WORLD_RANK", source), _int(env, count, source), source)
    if _first(env, "PMI_RANK"):
        if not _first(env, "PMI_SIZE"):
            raise LaunchError(f"PMI_RANK is set but PMI_SIZE is not: {FIX}")
        source = "PMI (PMI_RANK/PMI_SIZE)"
        return _int(env, "PMI_RANK", source), _int(env, "PMI_SIZE", source), source
    if _first(env, "PMIX_RANK"):
        count = _first(env, "PMIX_SIZE", "SLURM_STEP_NUM_TASKS", COUNT)
        if count is None:
            raise LaunchError(
                f"PMIX_RANK is set but no process count (PMIX_SIZE, SLURM_STEP_NUM_TASKS or "
                f"{COUNT}): {FIX}"
            )
        source = f"PMIx (PMIX_RANK, {count})"
        return _int(env, "PMIX_RANK", source), _int(env, count, source), source
    if _first(env, "SLURM_PROCID") and _first(env, "SLURM_STEP_ID"):
        count = _first(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
        if count is None:
            raise LaunchError(f"SLURM_PROCID is set but SLURM_STEP_NUM_TASKS is not: {FIX}")
        source = f"SLURM (SLURM_PROCID, {count})"
        return _int(env, "SLURM_PROCID", source), _int(env, count, source), source
    return None


def check_coordinator(address: str) -> str:
    """host:port, or LaunchError."""
    m = _HOST_PORT.fullmatch(address.strip())
    if not m or not 0 < int(m.group("port")) < 65536:
        raise LaunchError(f"{COORDINATOR}={address!r} is not host:port (e.g. node01:41234): {FIX}")
    return address.strip()


def this_process(env: Mapping[str, str] = os.environ) -> Process:
    """This process's place in the training, from its environment.

    MNISTFLOW_PROCESS_INDEX/COUNT (our local launcher) win; otherwise Open MPI's
    OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/PMI_SIZE, PMIX_RANK, or SLURM_PROCID with
    SLURM_STEP_NUM_TASKS inside an srun step. Nothing set: a single process. The
    coordinator comes from MNISTFLOW_COORDINATOR; a single process has none.
    When run_workers started the processes it also set MNISTFLOW_PROCESS_COUNT, and a
    scheduler that started a different number of processes is an error.
    """
    if _first(env, INDEX):
        source = f"mnistflow's launcher ({INDEX}/{COUNT})"
        if not _first(env, COUNT):
            raise LaunchError(f"{INDEX} is set but {COUNT} is not: {FIX}")
        index, count = _int(env, INDEX, source), _int(env, COUNT, source)
    else:
        found = _from_scheduler(env)
        if found is None:
            expected = _int(env, COUNT, "run_workers") if _first(env, COUNT) else 1
            if expected != 1:
                raise LaunchError(
                    f"the training asked for {expected} processes ({COUNT}={expected}) but no "
                    "launcher told this process its place (no OMPI_COMM_WORLD_RANK, PMI_RANK, "
                    f"PMIX_RANK, or SLURM_PROCID inside an srun step): {FIX}"
                )
            return Process(0, 1, None)
        index, count, source = found
        if _first(env, COUNT):
            expected = _int(env, COUNT, "run_workers")
            if expected != count:
                raise LaunchError(
                    f"process count mismatch: {source} says {count} processes, but the "
                    f"training asked for {expected} ({COUNT}, from distribution.processes). "
                    "Submit the job with as many tasks as distribution.processes (the train "
                    "rule's resources do), or run the workers through run_workers"
                )
    if count < 1 or not 0 <= index < count:
        raise LaunchError(f"process index {index} is not in 0..{count - 1} ({source}): {FIX}")
    if count == 1:
        return Process(0, 1, None)
    address = env.get(COORDINATOR, "").strip()
    if not address:
        raise LaunchError(
            f"process {index} of {count} (from {source}) has no coordinator: "
            f"{COORDINATOR} is not set, so the processes cannot find each other. {FIX}"
        )
    return Process(index, count, check_coordinator(address))
