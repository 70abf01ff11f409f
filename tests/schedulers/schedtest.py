"""Helpers shared by tests/test_scheduler_*.py: bring-up, scratch workflows, timed runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import copy_workflow

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "tests" / "schedulers"
TOY_SNAKEFILE = HERE / "toy" / "Snakefile"
# What the toy imports from mnistflow.
TOY_MODULES = ("launch.py", "place.py", "distribution_config.py")
PJM_SIM_DIR = HERE / "pjm_sim"
# OpenPBS is not packaged by Debian: its build and bring-up script live beside the repository.
UP_SCRIPTS = {"pbs": REPO.parent / "shared" / "vendor" / "openpbs" / "pbs_up.sh"}

# A wildcard value full of shell syntax: if any layer (Snakemake, a plugin, our
# submit scripts, the scheduler) ran it through a shell, pwned_* files appear.
EVIL_TAG = "a; touch pwned_semi $(touch pwned_subst) `touch pwned_tick`"
EVIL_VALUE = "x; touch pwned_value $(touch pwned_value2)"

_brought_up: dict[str, str | None] = {}


# The scheduler tests' training: the sample, softmax, one epoch, a GPU request on train (fake
# GPUs on the test clusters); evaluate runs on CPU.
SCHEDULER_TEST_CONFIG = (
    "dataset: mnist-sample\n"
    "models: [softmax]\n"
    "hyperparameters: {softmax: {epochs: 1}}\n"
    "resources:\n"
    "  train: {threads: 2, mem_mb: 1500, runtime: 10, gpu: 1}\n"
    "  evaluate: {threads: 1, mem_mb: 1500, runtime: 10}\n"
)


def skip_or_fail(reason: str):
    """Skip locally; in CI (CI set) a scheduler that cannot start is a failure."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def bring_up(name: str) -> None:
    """Run tests/schedulers/<name>_up.sh (or UP_SCRIPTS[name]) once per session (idempotent)."""
    if name not in _brought_up:
        script = UP_SCRIPTS.get(name, HERE / f"{name}_up.sh")
        if not script.exists():
            _brought_up[name] = f"{script} not found"
        elif os.geteuid() != 0:
            _brought_up[name] = f"{script.name} needs root to install and start {name}"
        else:
            try:
                r = subprocess.run(
                    ["bash", str(script)], capture_output=True, text=True, timeout=900
                )
                ok = r.returncode == 0
                detail = (r.stdout + r.stderr)[-3000:]
            except subprocess.TimeoutExpired:
                ok, detail = False, "timed out after 900 s"
            _brought_up[name] = None if ok else f"{script.name} failed:\n{detail}"
    if _brought_up[name]:
        skip_or_fail(f"{name} cannot be brought up here: {_brought_up[name]}")


def toy_workdir(tmp_path: Path) -> Path:
    """A scratch directory with the toy workflow, mnistflow's launcher and profiles/."""
    work = tmp_path / "toy"
    work.mkdir()
    for name in ("Snakefile", "meet.py", "launch_workers.py"):
        shutil.copy2(TOY_SNAKEFILE.parent / name, work / name)
    # The real launcher, a process's place and the train rule's resources (standard library
    # only), importable as mnistflow.launch, mnistflow.place, mnistflow.distribution_config.
    (work / "mnistflow").mkdir()
    (work / "mnistflow" / "__init__.py").write_text("")
    for module in TOY_MODULES:
        shutil.copy2(REPO / "workflow" / "scripts" / "mnistflow" / module, work / "mnistflow")
    shutil.copytree(REPO / "profiles", work / "profiles")
    return work


def real_workdir(tmp_path: Path) -> Path:
    """A scratch copy of the real pipeline with a small, fast configuration file."""
    work = copy_workflow(tmp_path / "pipeline")
    # One family, one epoch, a GPU request on train (fake GPUs on the test clusters); evaluate
    # runs on CPU.
    (work / "config" / "scheduler-test.yaml").write_text(SCHEDULER_TEST_CONFIG)
    return work


def start_snakemake(workdir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Start snakemake in workdir; its output goes to workdir/../snakemake.out.

    A file, not a pipe: a pipe nobody reads while the test polls the
    scheduler would fill up and stall snakemake.
    """
    log = open(workdir.parent / "snakemake.out", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # so a timeout can stop snakemake and its children
    )
    proc.log = log
    return proc


def _output(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


def wait_snakemake(proc: subprocess.Popen, timeout: float, check: bool = True) -> str:
    """Wait for a run; fail clearly instead of hanging when it does not end."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # lets snakemake cancel its cluster jobs
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        pytest.fail(
            f"snakemake did not finish within {timeout:.0f} s (a status command that never "
            f"reports a finished job waits forever):\n{_output(proc)[-6000:]}"
        )
    out = _output(proc)
    proc.log.close()
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake exited {proc.returncode}:\n{out[-8000:]}")
    return out


def run_snakemake(workdir: Path, *args: str, timeout: float = 240, env=None, check=True) -> str:
    return wait_snakemake(start_snakemake(workdir, *args, env=env), timeout, check)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    """Poll predicate() until it returns something truthy (fail early if proc ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"snakemake ended while waiting for {what}:\n{_output(proc)[-6000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def assert_nothing_executed(*dirs: Path) -> None:
    """No pwned_* file anywhere: no value was run through a shell unquoted."""
    found = [p for d in dirs if d.exists() for p in d.rglob("pwned*")]
    found += list(Path("/tmp").glob("pwned*"))
    assert not found, f"shell injection: {found}"


def read_env_record(path: Path) -> dict[str, str]:
    """The toy's results/env_*.txt: KEY=VALUE lines."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]
