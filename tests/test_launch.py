"""mnistflow.launch: starting a training's processes, for real.

run_workers starts real processes: two Python workers (tests/schedulers/toy/meet.py) that
learn their place (mnistflow.place, tests/test_place.py) and meet over TCP at the
coordinator, with our local launcher and with Open MPI's mpirun.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnistflow import launch
from mnistflow.launch import LaunchError

REPO = Path(__file__).resolve().parents[1]
MEET = REPO / "tests" / "schedulers" / "toy" / "meet.py"
SCRIPTS = REPO / "workflow" / "scripts"


# --- launcher choice and commands -------------------------------------------------------


@pytest.mark.parametrize(
    "env, launcher",
    [
        ({}, "local"),
        ({"SLURM_JOB_ID": "3"}, "srun"),
        ({"PBS_JOBID": "3.vm"}, "mpirun"),
        ({"JOB_ID": "3", "PE_HOSTFILE": "/tmp/x"}, "mpirun"),
        ({"PJM_JOBID": "3"}, "mpiexec"),
        ({"SLURM_JOB_ID": "3", "MNISTFLOW_LAUNCHER": "local"}, "local"),
    ],
)
def test_launcher_follows_the_job(env, launcher):
    assert launch.choose_launcher(env) == launcher


def test_unknown_forced_launcher_is_refused():
    with pytest.raises(LaunchError, match="MNISTFLOW_LAUNCHER='aprun' is not one of"):
        launch.choose_launcher({"MNISTFLOW_LAUNCHER": "aprun"})


def test_launcher_commands(tmp_path):
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("n1\nn1\nn2\nn2\n")
    env = {"PBS_NODEFILE": str(nodefile), "MNISTFLOW_COORDINATOR": "n1:5", "SECRET": "x"}
    srun = launch.launcher_command("srun", 4, ["python", "w"], env, nodes=2)
    assert srun[:5] == ["srun", "--overlap", "--ntasks=4", "--nodes=2", "--kill-on-bad-exit=1"]
    mpirun = launch.launcher_command("mpirun", 4, ["python", "w"], env, nodes=2)
    assert mpirun[:3] == ["mpirun", "-np", "4"]
    assert ["--hostfile", str(nodefile)] == mpirun[5:7]
    assert "MNISTFLOW_COORDINATOR=n1:5" in mpirun and "SECRET=x" not in mpirun
    assert mpirun[-2:] == ["python", "w"]
    assert launch.launcher_command("mpiexec", 2, ["w"], {})[:3] == ["mpiexec", "-n", "2"]


def test_nodes_without_a_scheduler_is_refused():
    with pytest.raises(LaunchError, match="nodes=2 needs a scheduler job"):
        launch.run_workers(2, ["true"], env={"PATH": os.environ["PATH"]}, nodes=2)
    with pytest.raises(LaunchError, match="2 processes cannot spread over 3 nodes"):
        launch.run_workers(2, ["true"], nodes=3)


def test_missing_launcher_command_is_named():
    env = {"PATH": "/nonexistent", "MNISTFLOW_LAUNCHER": "mpiexec"}
    with pytest.raises(LaunchError, match="mpiexec is needed .* not on PATH.*openmpi-bin"):
        launch.run_workers(2, ["true"], env=env)


# --- run_workers starts real processes ---------------------------------------------------


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_", "PJM_"))}
    env.pop("PE_HOSTFILE", None)
    env["PYTHONPATH"] = str(SCRIPTS)
    return {**env, **extra}


def records(out: Path) -> list[dict]:
    return [json.loads((out / f"process_{i}.json").read_text()) for i in range(2)]


def test_two_local_processes_learn_their_place_and_meet_at_the_coordinator(tmp_path):
    out = tmp_path / "out"
    code = launch.run_workers(2, [sys.executable, str(MEET), str(out)], env=worker_env())
    assert code == 0
    first, second = records(out)
    assert (first["index"], first["count"], second["index"], second["count"]) == (0, 1 + 1, 1, 2)
    assert first["coordinator"] == second["coordinator"]
    assert first["coordinator"].startswith("127.0.0.1:")
    assert first["met"] == [1] and second["answer"] == "welcome"
    assert first["pid"] != second["pid"]


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="Open MPI (openmpi-bin) not installed")
def test_two_processes_through_open_mpi(tmp_path):
    """What a PBS or Grid Engine job runs, here without the scheduler (MNISTFLOW_LAUNCHER)."""
    out = tmp_path / "out"
    env = worker_env(MNISTFLOW_LAUNCHER="mpirun")
    code = launch.run_workers(2, [sys.executable, str(MEET), str(out)], env=env)
    assert code == 0
    first, second = records(out)
    assert first["launched_by"] == second["launched_by"] == ["OMPI_COMM_WORLD_RANK"]
    assert (first["index"], second["index"], first["count"]) == (0, 1, 2)
    assert first["met"] == [1]


def test_one_failing_worker_stops_the_other(tmp_path):
    out = tmp_path / "out"
    start = time.monotonic()
    code = launch.run_workers(
        2, [sys.executable, str(MEET), str(out), "fail"], env=worker_env(), stop_grace=5
    )
    took = time.monotonic() - start
    assert code == 3  # the worst exit code: the failing worker's, not the stopped one's
    assert took < 60, f"process 0 (sleeping 120 s) was not stopped: {took:.0f} s"
    pid0 = json.loads((out / "process_0.json").read_text())["pid"]
    assert not Path(f"/proc/{pid0}").exists() or "Z" in Path(f"/proc/{pid0}/stat").read_text()


LAUNCHER_PROGRAM = """
import sys
from mnistflow.launch import run_workers
sys.exit(run_workers(2, [sys.executable, {meet!r}, {out!r}, "wait"]))
"""


def start_waiting_launcher(out: Path, launcher: str, new_session=True) -> subprocess.Popen:
    """run_workers, its workers in wait mode, once both are ready; by default in its own
    process group (as a job's shell is)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER_PROGRAM.format(meet=str(MEET), out=str(out))],
        env=worker_env(MNISTFLOW_LAUNCHER=launcher),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )
    deadline = time.monotonic() + 60
    while not all((out / f"ready_{i}").exists() for i in range(2)):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "workers never got ready"
        time.sleep(0.1)
    return proc


@pytest.mark.parametrize(
    "launcher, sent, received",
    [
        ("local", signal.SIGTERM, "SIGTERM"),
        ("local", signal.SIGUSR1, "SIGUSR1"),
        ("local", signal.SIGINT, "SIGINT"),
        # Open MPI kills its processes a second after a SIGTERM: they get SIGUSR1 instead
        pytest.param(
            "mpirun",
            signal.SIGTERM,
            "SIGUSR1",
            marks=pytest.mark.skipif(shutil.which("mpirun") is None, reason="no Open MPI"),
        ),
    ],
)
def test_signals_reach_every_worker(tmp_path, launcher, sent, received):
    out = tmp_path / "out"
    proc = start_waiting_launcher(out, launcher, new_session=False)
    proc.send_signal(sent)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    for record in records(out):
        assert record["signals"] == [received], record
    log = proc.stderr.read()
    assert "exited [0" in log and f"after {sent.name}" in log, log


MPIRUN = pytest.mark.skipif(shutil.which("mpirun") is None, reason="no Open MPI")


@pytest.mark.parametrize(
    "launcher, sent, received",
    [
        ("local", signal.SIGTERM, "SIGTERM"),
        ("local", signal.SIGXCPU, "SIGXCPU"),  # PJM's warning at its elapse limit
        # mpirun, in its own session, is not hit: it would kill the workers within a second
        pytest.param("mpirun", signal.SIGTERM, "SIGUSR1", marks=MPIRUN),
        pytest.param("mpirun", signal.SIGXCPU, "SIGUSR1", marks=MPIRUN),
    ],
)
def test_a_signal_to_the_jobs_process_group_lets_every_worker_finish_its_checkpoint(
    tmp_path, launcher, sent, received
):
    """What PJM (its simulator), Snakemake's local cancel and a terminal's Ctrl-C do."""
    out = tmp_path / "out"
    proc = start_waiting_launcher(out, launcher)
    os.killpg(proc.pid, sent)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    for record in records(out):
        assert record["signals"] == [received], record  # and wrote after its 2 s "checkpoint"


@pytest.mark.parametrize("launcher", ["local", pytest.param("mpirun", marks=MPIRUN)])
def test_a_killed_launcher_leaves_no_worker_behind(tmp_path, launcher):
    """A scheduler's SIGKILL may reach only the job's shell and launcher (a process group)."""
    out = tmp_path / "out"
    proc = start_waiting_launcher(out, launcher)
    pids = [json.loads((out / f"process_{i}.json").read_text())["pid"] for i in range(2)]
    proc.kill()
    proc.wait()

    def alive(pid: int) -> bool:
        try:
            return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if alive(pid)], "workers outlived their launcher"
