"""Data-parallel training (config ``distribution``): validation, batch sharding, and through the
real snakemake CLI on the bundled sample: 1 process x 2 CPU devices, 2 processes x 1 device on
127.0.0.1, one device, and the code before the switch existed; a killed 2-process run resumes.

Measured here (mlp, 20 epochs of 94 batches of 16, seed 0, JAX on CPU): 2 processes x 1 device
and 1 process x 2 devices end with bit-identical weights; against one device they differ by at
most 3.6e-7 on an Intel Xeon; on an AMD EPYC at most 2.7e-3, 3.2e-6 on average (float32
round-off of summing the batch's gradient in two halves, over 1,880 steps);
the default configuration gives the weights of the code before the switch, bit for bit.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from conftest import REPO, copy_workflow, snakemake
from mnistflow import distribution, settings
from resumecheck import assert_resumed_as_uninterrupted, assert_same_weights

SCRIPTS = REPO / "workflow" / "scripts"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
# The commit before the distribution switch: a single-process run must still give its weights.
BEFORE = "9e6a48b"

EPOCHS = 20
CONFIG = {
    "dataset": "mnist-sample",
    "models": ["mlp"],
    # 1,500 images in batches of 16: 94 batches (the last one 12: 6 per process), three fit()
    # executions an epoch, so a kill can land mid-epoch.
    "hyperparameters": {"mlp": {"epochs": EPOCHS, "batch_size": 16}},
    "compute": {"backend": "jax"},
    "resources": {"train": {"threads": 1}},
    "checkpoint": {"every_minutes": 0.01},  # mid-epoch saves too
}
RUN = "mnist-sample/mlp/default"
TARGET = f"results/{RUN}/param.hdf5"
TRAIN_LOG = f"logs/{RUN}/train.log"
CHECKPOINTS = ".checkpoints/mnist-sample/mlp/default"
MODES = {
    "devices": {"mode": "devices", "devices": 2},
    "processes": {"mode": "processes", "processes": 2},
}
# Until mnistflow/launch.py (its own helper's) is merged: the least launcher train.py needs, put
# into the test's copy of the workflow only when the repository has none.
MINIMAL_LAUNCH = """
import ctypes, os, signal, socket, subprocess, sys
from dataclasses import dataclass


class LaunchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Process:
    index: int
    count: int
    coordinator: str | None


def this_process(env=os.environ):
    count = int(env.get("MNISTFLOW_PROCESS_COUNT", 1))
    coordinator = env.get("MNISTFLOW_COORDINATOR") if count > 1 else None
    return Process(int(env.get("MNISTFLOW_PROCESS_INDEX", 0)), count, coordinator)


def run_workers(count, argv, env=None, nodes=1):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    def child():
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    procs = [
        subprocess.Popen(argv, env={**(env or os.environ), "MNISTFLOW_PROCESS_INDEX": str(i),
            "MNISTFLOW_PROCESS_COUNT": str(count),
            "MNISTFLOW_COORDINATOR": f"127.0.0.1:{port}"}, preexec_fn=child,
            start_new_session=True)
        for i in range(count)
    ]
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(signum, lambda n, f: [p.send_signal(n) for p in procs])
    codes = [p.wait() for p in procs]
    return max(codes, key=abs)
"""
# 1 process x 2 devices against one device, after 20 epochs (1,880 steps of Adam): on a 2-core
# Intel Xeon VM at most 3.6e-7 (the largest weight 0.53); on a 2-core AMD EPYC VM (XLA's CPU
# kernels differ) a few of the first layer's weights drift further, at most 2.7e-3, while the
# mean difference of every array stays at most 3.2e-6 (the same in two runs). 0 between 2
# processes x 1 device and 1 process x 2 devices on both. Bounds: the AMD figures about 4x;
# a wrong split of the batches moves the weights on average by orders of magnitude more.
ONE_DEVICE_MAX = 1e-2
ONE_DEVICE_MEAN = 1e-5
# SLURM's KillWait on the test cluster (tests/schedulers/slurm_up.sh; SLURM's default is 30 s).
KILL_WAIT_S = 5


# --- configuration ------------------------------------------------------------------------


def check(config: dict) -> dict:
    from snakemake.utils import validate

    settings.validate_config(config, SCHEMA, lambda c, s, set_default: validate(c, s, set_default))
    return config


def test_default_is_one_process_on_one_device():
    config = check(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    assert config["distribution"] == {"mode": "none", "processes": 1, "nodes": 1, "devices": 1}
    assert check({})["distribution"]["mode"] == "none"  # the key left out: the same


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"distribution": {"mode": "processes", "processes": 2}},
            "distribution.mode: 'processes' needs compute.backend: jax (it is 'tensorflow'); "
            "set compute.backend: jax",
        ),
        (
            {"compute": {"backend": "jax"}, "distribution": {"processes": 2}},
            "distribution.processes: 2 needs distribution.mode: processes",
        ),
        (
            {"compute": {"backend": "jax"}, "distribution": {"devices": 4}},
            "distribution.devices: 4 needs distribution.mode: devices",
        ),
        (
            {"compute": {"backend": "jax"}, "distribution": {"mode": "devices", "processes": 2}},
            "distribution.processes: 2, but mode devices is one process on one node; set it "
            "to 1, or distribution.mode: processes",
        ),
        (
            {"compute": {"backend": "jax"}, "distribution": {"mode": "processes", "nodes": 2}},
            "distribution.nodes: 2 nodes for 1 processes leaves nodes idle",
        ),
        (
            {"distribution": {"mode": "mpi"}},
            "distribution.mode: 'mpi' is not one of ['none', 'devices', 'processes'] "
            "(allowed values: none, devices, processes)",
        ),
        (
            {"distribution": {"mode": "processes", "processes": 0}},
            "distribution.processes: 0 is less than the minimum of 1",
        ),
    ],
)
def test_invalid_distribution_names_the_key_and_the_fix(config, message):
    with pytest.raises(settings.ConfigError) as error:
        check(config)
    assert message in str(error.value)


def test_valid_distributions_pass():
    for dist in ({"mode": "devices", "devices": 2}, {"mode": "processes", "processes": 4}):
        check({"compute": {"backend": "jax"}, "distribution": dist})
    config = check(
        {"compute": {"backend": "jax"}, "distribution": {"mode": "processes", "processes": 4}}
    )
    assert config["distribution"] == {"mode": "processes", "processes": 4, "nodes": 1, "devices": 1}


# --- sharding -----------------------------------------------------------------------------


def spread(count: int, devices: int = 1, index: int = 0) -> distribution.Setup:
    return distribution.Setup("processes", index, count, devices, "jax", "cpu")


@pytest.mark.parametrize(("count", "devices"), [(1, 2), (2, 1), (2, 2), (4, 1)])
def test_the_processes_batches_together_are_the_single_process_batches(count, devices):
    batch, order = 16, np.random.default_rng(0).permutation(1500)
    parts = [spread(count, devices, p).shard(order, batch) for p in range(count)]
    local = batch // count
    assert {len(part) for part in parts} == {len(parts[0])}  # equal shares
    steps = -(-len(parts[0]) // local)
    rebuilt = np.concatenate(
        [
            np.concatenate([part[s * local : (s + 1) * local] for part in parts])
            for s in range(steps)
        ]
    )
    # 1,500 = 93 x 16 + 12: the last batch of 12 splits evenly over up to 4 devices.
    np.testing.assert_array_equal(rebuilt, order)


def test_a_last_batch_that_does_not_split_is_cut_to_a_multiple_of_the_devices():
    order = np.arange(21)  # batches of 8: 8, 8, 5
    one, two = spread(2, 1, 0), spread(2, 1, 1)
    assert one.usable(21, 8) == 20
    np.testing.assert_array_equal(one.shard(order, 8), [0, 1, 2, 3, 8, 9, 10, 11, 16, 17])
    np.testing.assert_array_equal(two.shard(order, 8), [4, 5, 6, 7, 12, 13, 14, 15, 18, 19])
    assert distribution.NO_DISTRIBUTION.usable(21, 8) == 21  # a single device trains all


def test_a_batch_size_that_does_not_split_says_what_to_set():
    with pytest.raises(distribution.DistributionError, match="multiple of 4"):
        spread(2, 2).check_batch_size(30)
    spread(2, 2).check_batch_size(32)


def test_the_log_names_processes_and_devices():
    assert spread(2).describe() == "2 processes x 1 device (jax, cpu)"
    assert spread(1, 2).describe() == "1 process x 2 devices (jax, cpu)"


def python(code: str) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r})\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300
    )


def test_forced_cpu_devices_and_a_process_that_cannot_find_the_others():
    result = python(
        "from mnistflow import runtime\n"
        "runtime.configure(1, seed=0, backend='jax', cpu_devices=2)\n"
        "from types import SimpleNamespace\n"
        "from mnistflow import distribution\n"
        "print(distribution.setup('devices', None, 2).describe())\n"
        "try:\n"
        "    place = SimpleNamespace(index=1, count=2, coordinator=None)\n"
        "    distribution.setup('processes', place, 1)\n"
        "except distribution.DistributionError as error:\n"
        "    print(error)\n"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[-2] == "1 process x 2 devices (jax, cpu)"
    assert lines[-1].startswith("process 1 of 2 does not know where process 0 listens"), lines


def test_a_worker_started_as_more_processes_than_configured_says_so(tmp_path, monkeypatch):
    launch = pytest.importorskip("mnistflow.launch", reason="mnistflow/launch.py not merged yet")
    from mnistflow import worker

    arguments = worker.write_arguments(
        tmp_path / "args.json",
        {"processes": 2, "devices": 1, "threads": 1, "compute": {}, "train": {"hp": {}}},
    )
    monkeypatch.setenv("MNISTFLOW_PROCESS_INDEX", "0")
    monkeypatch.setenv("MNISTFLOW_PROCESS_COUNT", "3")
    monkeypatch.setenv("MNISTFLOW_COORDINATOR", "127.0.0.1:41234")
    with pytest.raises(launch.LaunchError, match="configured for 2 processes .* started as 3"):
        worker.main([str(arguments)])


# --- through snakemake --------------------------------------------------------------------


def workdir(path: Path, dist: dict | None, code: str | None = None) -> Path:
    """A scratch copy of the workflow (with ``code``: the workflow/ of that commit)."""
    work = copy_workflow(path)
    if code is not None:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", code, "workflow"], capture_output=True
        )
        if archive.returncode != 0:
            pytest.skip(f"commit {code} is not in this checkout: {archive.stderr[-300:]!r}")
        subprocess.run(["rm", "-rf", str(work / "workflow")], check=True)
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)
    launch = work / "workflow" / "scripts" / "mnistflow" / "launch.py"
    if code is None and not launch.exists():
        launch.write_text(MINIMAL_LAUNCH)
    config = dict(CONFIG, **({"distribution": dist} if dist else {}))
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return work


def start(work: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", TARGET],
        cwd=work,
        stdout=open(work / "snakemake.out", "wb"),  # noqa: SIM115  (closed with the process)
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal or a batch job gives it
    )


def finish(work: Path, process: subprocess.Popen) -> None:
    code = process.wait(timeout=900)
    assert code == 0, (work / "snakemake.out").read_text()[-6000:] + read(work / TRAIN_LOG)


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The same training in four ways, side by side (2 cores: ~1.5 minutes in all)."""
    base = tmp_path_factory.mktemp("distribution")
    works = {
        "before": workdir(base / "before", None, code=BEFORE),
        "single": workdir(base / "single", None),
        **{name: workdir(base / name, dist) for name, dist in MODES.items()},
    }
    started = {name: start(work) for name, work in works.items()}
    for name, process in started.items():
        finish(works[name], process)
    return works


def weights(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as h5:
        names = []
        h5.visit(names.append)
        return {n: h5[n][()] for n in names if isinstance(h5[n], h5py.Dataset)}


def test_two_processes_give_the_weights_of_one_process_with_two_devices(runs):
    assert_same_weights(runs["processes"] / TARGET, runs["devices"] / TARGET)


def test_distributed_weights_match_one_device_to_round_off(runs):
    one, two = weights(runs["single"] / TARGET), weights(runs["devices"] / TARGET)
    assert one.keys() == two.keys()  # the same layers, named as in a single-process run
    for name in one:
        difference = np.abs(two[name] - one[name])
        assert difference.max() < ONE_DEVICE_MAX, (name, difference.max())
        assert difference.mean() < ONE_DEVICE_MEAN, (name, difference.mean())
    # and not trivially: the halves' sums round differently
    assert any(not np.array_equal(one[n], two[n]) for n in one)


def test_the_default_single_process_run_is_unchanged(runs):
    assert_same_weights(runs["single"] / TARGET, runs["before"] / TARGET)
    for name in ("history.csv",):
        before = (runs["before"] / "results" / RUN / name).read_text().splitlines()
        after = (runs["single"] / "results" / RUN / name).read_text().splitlines()
        strip = [re.sub(r",[\d.]+$", "", line) for line in before]  # seconds differ
        assert [re.sub(r",[\d.]+$", "", line) for line in after] == strip
    assert "distribution:" not in read(runs["single"] / TRAIN_LOG)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("devices", "distribution: 1 process x 2 devices (jax, cpu)"),
        ("processes", "distribution: 2 processes x 1 device (jax, cpu)"),
    ],
)
def test_the_log_says_how_many_processes_and_devices(runs, name, line):
    log = read(runs[name] / TRAIN_LOG)
    assert line in log.splitlines(), log
    # process 0 logs alone: every epoch once
    assert re.findall(rf"^Epoch (\d+)/{EPOCHS} - ", log, re.M) == [
        str(e) for e in range(1, EPOCHS + 1)
    ]


def test_only_process_0_writes_the_tensorboard_events(runs):
    """One event file per part (one writer), holding the run's history, in every mode."""
    from eventscheck import assert_events_match_history, event_files

    for name in ("single", *MODES):
        folder = runs[name] / "logs" / "tensorboard" / RUN
        assert [p.parent.name for p in event_files(folder)] == ["test", "train", "validation"]
        assert_events_match_history(folder, runs[name] / "results" / RUN / "history.csv")


def test_distributed_outputs_are_the_single_process_files(runs):
    for name in MODES:
        outputs = runs[name] / "results" / RUN
        assert sorted(p.name for p in outputs.iterdir()) == sorted(
            p.name for p in (runs["single"] / "results" / RUN).iterdir()
        )
        assert not list(outputs.glob(".*.tmp*")), "only complete files, renamed into place"
        assert not (runs[name] / ".checkpoints").exists()
        with np.load(outputs / "predictions.npz") as npz:
            assert npz["probabilities"].shape == (500, 10)
    # the saved model loads, and param.hdf5 loads into it
    outputs = runs["processes"] / "results" / RUN
    result = python(
        "from mnistflow import runtime\n"
        "runtime.configure(1, backend='jax')\n"
        "import keras, numpy as np\n"
        f"m = keras.models.load_model({str(outputs / 'model.keras')!r})\n"
        f"m.load_weights({str(runs['processes'] / TARGET)!r})\n"
        "print(m.count_params())\n"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == str(784 * 128 + 128 + 128 * 10 + 10)


def workers_of(work: Path) -> list[int]:
    """Live worker processes started for ``work``'s training."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if b"mnistflow.worker" in cmdline and cwd == str(work):
                found.append(int(entry.name))
    return found


def checkpoint_serials(work: Path) -> set[str]:
    return {path.name for path in (work / CHECKPOINTS).glob("checkpoint-*.npz")}


def wait_until(condition, work: Path, process: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while not condition():
        assert process.poll() is None, read(work / "snakemake.out")[-3000:] + read(work / TRAIN_LOG)
        assert time.time() < deadline, read(work / TRAIN_LOG)
        time.sleep(0.2)


def training_pid(session: int) -> int:
    """The process running train.py (the workers' launcher) in snakemake's session."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session and b"train.py" in (
                    (entry / "cmdline").read_bytes()
                ):
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError("no training process found")


def test_a_stopped_then_killed_two_process_training_resumes(tmp_path, runs):
    """SIGTERM (a scheduler's warning) to the launcher: every worker stops at the same step
    after process 0 saved. The rerun resumes, and is killed outright (SIGKILL to snakemake's
    process group, the workers die with their launcher); the next rerun resumes again and ends
    with the uninterrupted 2-process run's weights, bit for bit."""
    work = workdir(tmp_path / "work", MODES["processes"])
    process = start(work)
    try:
        wait_until(
            lambda: "Epoch 2/" in read(work / TRAIN_LOG) and checkpoint_serials(work),
            work,
            process,
        )
        assert len(workers_of(work)) == 2
        # as a scheduler does at its time limit: the launcher forwards it to the workers
        os.kill(training_pid(process.pid), signal.SIGTERM)
        wait_until(lambda: "Stopped by SIGTERM" in read(work / TRAIN_LOG), work, process)
        stopped_at = time.time()
        while workers_of(work) and time.time() < stopped_at + 60:
            time.sleep(0.05)
        # The workers must be gone within the scheduler's kill delay after the checkpoint
        # (the test cluster's KillWait: 5 s). Measured: 0.5-0.7 s; before worker.exit_now,
        # Python's teardown with JAX loaded took 6-11 s (2-core AMD EPYC, load 9-12).
        assert time.time() - stopped_at < KILL_WAIT_S, "the stopped workers outlived KillWait"
        assert process.wait(timeout=120) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stopped = read(work / TRAIN_LOG)
    assert re.search(
        r"^Stopped by SIGTERM in epoch \d+, step \d+ \(checkpoint written\)", stopped, re.M
    ), stopped
    assert not workers_of(work)
    assert not (work / TARGET).exists()

    saved = checkpoint_serials(work)
    process = start(work)  # the same command
    try:
        wait_until(
            lambda: (
                "Resuming mlp/default from epoch" in read(work / TRAIN_LOG)
                and checkpoint_serials(work) - saved
            ),
            work,
            process,
        )
        os.killpg(process.pid, signal.SIGKILL)  # snakemake and the training, no warning
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    deadline = time.time() + 30
    while workers_of(work) and time.time() < deadline:
        time.sleep(0.2)
    assert not workers_of(work), "the workers died with their launcher"
    assert not (work / TARGET).exists()

    snakemake(work, "--unlock")  # Snakemake was killed: its lock remains
    snakemake(work, TARGET)
    log = read(work / TRAIN_LOG)
    assert "distribution: 2 processes x 1 device (jax, cpu)" in log, log
    assert_resumed_as_uninterrupted(work, runs["processes"], RUN, EPOCHS)
