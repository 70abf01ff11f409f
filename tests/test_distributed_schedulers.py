"""One training, several processes, through each scheduler's profile (issue 13).

The toy workflow's train_dist rule asks for what the real train rule asks for with
`distribution: {mode: processes, processes: 2}` (mnistflow.distribution_config.job_resources:
nodes, tasks, mpi) and starts its processes as workflow/scripts/train.py does
(mnistflow.launch.run_workers). Each process (tests/schedulers/toy/meet.py) records the
index, count and coordinator it got from its launcher's environment, and they meet over
TCP at the coordinator: the rendezvous a multi-process JAX training makes.

Real SLURM (srun), real OpenPBS and real Grid Engine (Open MPI's mpirun), and the PJM
simulator (its mpiexec runs Open MPI's mpirun). What the scheduler made of the request
is read from its own records (scontrol/sacct, qstat -x -f, qacct, the simulator's job).
The directives for several nodes, which a one-host test cluster cannot run, are checked
in the submit arguments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from schedulers.schedtest import (
    PJM_SIM_DIR,
    bring_up,
    read_env_record,
    real_workdir,
    run_snakemake,
    toy_workdir,
    wait_for,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "profiles" / "lib"))
import pbs_lib  # noqa: E402
import pjm_lib  # noqa: E402
import uge_lib  # noqa: E402
from clusterjob import SiteSettingError  # noqa: E402

from mnistflow.distribution_config import job_resources  # noqa: E402

TARGET = "results/dist_t/process_0.json"
PBS_BIN = Path("/opt/pbs/bin")
needs_mpi = pytest.mark.skipif(
    shutil.which("mpirun") is None,
    reason="Open MPI not installed (tests/run.sh installs openmpi-bin)",
)


def worker_records(work: Path, count: int = 2) -> list[dict]:
    return [
        json.loads((work / "results" / "dist_t" / f"process_{i}.json").read_text())
        for i in range(count)
    ]


def assert_one_training_of_two(records: list[dict], launched_by: str) -> None:
    """Two processes, indices 0 and 1 of 2, one coordinator, and they met there."""
    assert [(r["index"], r["count"]) for r in records] == [(0, 2), (1, 2)]
    assert records[0]["coordinator"] == records[1]["coordinator"]
    assert records[0]["coordinator"].split(":")[0] not in ("", "127.0.0.1")  # this node
    assert records[0]["met"] == [1] and records[1]["answer"] == "welcome"
    assert records[0]["pid"] != records[1]["pid"]
    assert all(r["launched_by"] == [launched_by] for r in records), records


# --- directives (no scheduler needed) ---------------------------------------------------


def props(threads=1, **resources) -> dict:
    base = {"mem_mb": 4000, "runtime": 30}
    return {
        "rule": "train",
        "wildcards": {"dataset": "mnist", "family": "cnn", "run": "default"},
        "threads": threads,
        "resources": {**base, **resources},
    }


DIST_4_ON_2 = job_resources({"mode": "processes", "processes": 4, "nodes": 2, "devices": 1}, 1)


def test_pbs_asks_one_chunk_per_node_with_its_mpi_processes():
    args = pbs_lib.build_qsub_args(props(threads=2, **DIST_4_ON_2), "l/")
    assert "select=2:ncpus=4:mpiprocs=2:mem=4000mb:ngpus=2" in args
    single = pbs_lib.build_qsub_args(props(threads=2, gpu=1), "l/")
    assert "select=1:ncpus=2:mem=4000mb:ngpus=1" in single  # unchanged
    abci = pbs_lib.build_qsub_args(
        props(**DIST_4_ON_2, pbs_mode="abci", pbs_project="gaa50000"), "l/"
    )
    assert abci[abci.index("-q") + 1] == "rt_HF" and "select=2:mpiprocs=2" in abci


def test_grid_engine_asks_for_the_mpi_parallel_environment():
    args = uge_lib.build_qsub_args(props(threads=2, **DIST_4_ON_2), "l/")
    assert args[args.index("-pe") : args.index("-pe") + 3] == ["-pe", "mpi", "8"]
    assert "mem_free=1000M" in args  # 4000 MB per node, 2 nodes, 8 slots
    args = uge_lib.build_qsub_args(props(threads=1, uge_mpi_pe="orte", tasks=2, nodes=1), "l/")
    assert args[args.index("-pe") : args.index("-pe") + 3] == ["-pe", "orte", "2"]
    single = uge_lib.build_qsub_args(props(threads=2), "l/")
    assert single[single.index("-pe") : single.index("-pe") + 3] == ["-pe", "smp", "2"]


def test_pjm_asks_for_nodes_and_mpi_processes():
    args = pjm_lib.build_pjsub_args(props(**DIST_4_ON_2))
    assert args[:6] == ["-N", "train.mnist.cnn.default", "-L", "node=2", "--mpi", "proc=4"]
    assert "--mpi" not in pjm_lib.build_pjsub_args(props())


def test_uneven_processes_are_refused_by_every_profile():
    bad = props(tasks=3, nodes=2)
    for build in (
        lambda: pbs_lib.build_qsub_args(bad, "l/"),
        lambda: uge_lib.build_qsub_args(bad, "l/"),
        lambda: pjm_lib.build_pjsub_args(bad),
    ):
        with pytest.raises(SiteSettingError, match="tasks=3 and nodes=2"):
            build()


# --- SLURM ---------------------------------------------------------------------------------

SLURM_FAST = ["--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10"]
# The same for the cluster-generic profiles (PBS, Grid Engine, PJM).
GENERIC_FAST = ["--seconds-between-status-checks", "1", "--latency-wait", "10"]


def slurm_job_ids(out: str) -> list[str]:
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    listing = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return listing.split()


@pytest.mark.scheduler
@pytest.mark.parametrize(
    "config, gres",
    [
        # GPUs: gpu per node = 2 processes x 1 device; the plugin must not multiply the tasks
        (["gpu=1"], "gres/gpu=2"),
        # without the mpi resource the plugin runs the rule in a one-task step: the workers'
        # srun needs --overlap there, else it waits for the CPUs that step holds, forever
        (["no_mpi=1"], None),
    ],
    ids=["gpu", "inside-a-plugin-step"],
)
def test_slurm_two_tasks_of_one_job_form_one_training(tmp_path, config, gres):
    bring_up("slurm")
    work = toy_workdir(tmp_path)
    out = run_snakemake(
        work, "--profile", "profiles/slurm", *SLURM_FAST, TARGET, "--config", *config,
        env={"MNIST_SLURM_STATUS": "squeue"}, timeout=240,
    )  # fmt: skip
    (jobid,) = slurm_job_ids(out)  # one job for the whole training
    info = subprocess.run(
        ["scontrol", "show", "job", jobid], capture_output=True, text=True, check=True
    ).stdout
    assert "NumTasks=2" in info and "NumNodes=1" in info, info
    if gres:
        assert gres in info, info
    records = worker_records(work)
    assert_one_training_of_two(records, "SLURM_PROCID")
    # both processes are tasks of the same job step, started by srun
    assert records[0]["slurm_step"] == records[1]["slurm_step"] is not None
    assert read_env_record(work / "results" / "env_train_dist_t.txt")["SLURM_JOB_ID"] == jobid
    if subprocess.run(["sacct", "-n", "-j", jobid], capture_output=True).returncode == 0:

        def steps():
            lines = subprocess.run(
                ["sacct", "-n", "-P", "-j", jobid, "--format=JobID,NTasks,State"],
                capture_output=True,
                text=True,
            ).stdout.split()
            return (
                lines
                if any(ln.startswith(f"{jobid}.{records[0]['slurm_step']}|") for ln in lines)
                else None
            )

        step = next(
            ln
            for ln in wait_for(steps, 30, "sacct's record of the job step")
            if ln.startswith(f"{jobid}.{records[0]['slurm_step']}|")
        )
        assert step.split("|")[1:] == ["2", "COMPLETED"], step


DISTRIBUTED = (
    "compute: {backend: jax}\n"
    "distribution: {mode: processes, processes: 2, nodes: 1, devices: 1}\n"
    "resources:\n"
    "  train: {threads: 1, mem_mb: 3000, runtime: 10, gpu: 0}\n"
    "  evaluate: {threads: 1, mem_mb: 1500, runtime: 10}\n"
)
RUN_DIR = "results/mnist-sample/softmax/default"
CONFIGS = ["--configfile", "config/scheduler-test.yaml", "config/distributed.yaml"]


def external_job_ids(out: str) -> list[str]:
    """The scheduler's id of every job Snakemake's output says the cluster-generic plugin sent."""
    return re.findall(r"Submitted (?:group )?job \d+ with external jobid '([^']+)'", out)


def pbs_record(jobid: str) -> dict | None:
    """OpenPBS's record of a job (`qstat -x -f -F json`), None while it has none."""
    r = subprocess.run(
        [PBS_BIN / "qstat", "-x", "-f", "-F", "json", jobid], capture_output=True, text=True
    )
    if r.returncode != 0:
        return None
    return next(iter(json.loads(r.stdout, strict=False)["Jobs"].values()))


def distributed_workdir(tmp_path: Path, name: str) -> Path:
    """The real pipeline (softmax, one epoch, the sample) as a 2-process JAX training."""
    work = real_workdir(tmp_path / name)
    (work / "config" / "distributed.yaml").write_text(DISTRIBUTED)
    return work


def weights(param_hdf5: Path) -> dict[str, np.ndarray]:
    with h5py.File(param_hdf5) as h5:
        found = {}
        h5.visititems(
            lambda name, item: (
                found.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
            )
        )
    return found


def assert_same_training_as_two_local_processes(tmp_path: Path, work: Path, launcher: str):
    """The scheduler's 2-process training equals the same 2 processes run on this machine
    without a scheduler (local launcher, 127.0.0.1): bit for bit, on one machine."""
    log = (work / "logs" / "mnist-sample" / "softmax" / "default" / "train.log").read_text()
    assert f"launch: 2 processes on 1 node(s) with {launcher}" in log, log
    assert "distribution: 2 processes x 1 device" in log, log  # the training's own report
    local = distributed_workdir(tmp_path, "local")
    run_snakemake(local, f"{RUN_DIR}/param.hdf5", "-j2", *CONFIGS, timeout=300)
    local_log = local / "logs" / "mnist-sample" / "softmax" / "default" / "train.log"
    assert "with local" in local_log.read_text()
    ours, theirs = weights(work / RUN_DIR / "param.hdf5"), weights(local / RUN_DIR / "param.hdf5")
    assert ours.keys() == theirs.keys() and ours
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


@pytest.mark.scheduler
def test_slurm_real_training_of_two_processes_is_one_job_of_two_tasks(tmp_path):
    """The real train rule with distribution: {mode: processes, processes: 2} (JAX, CPU)."""
    bring_up("slurm")
    work = distributed_workdir(tmp_path, "slurm")
    out = run_snakemake(
        work, f"{RUN_DIR}/param.hdf5", "--profile", "profiles/slurm", *SLURM_FAST, *CONFIGS,
        env={"MNIST_SLURM_STATUS": "squeue"}, timeout=420,
    )  # fmt: skip
    infos = {
        jobid: subprocess.run(
            ["scontrol", "show", "job", jobid], capture_output=True, text=True, check=True
        ).stdout
        for jobid in slurm_job_ids(out)
    }
    train = [info for info in infos.values() if "rule_train_" in info]
    assert len(train) == 1, infos  # one job for the whole training
    assert "NumTasks=2" in train[0] and "NumNodes=1" in train[0], train[0]
    assert_same_training_as_two_local_processes(tmp_path, work, "srun")


@pytest.mark.scheduler
@needs_mpi
def test_openpbs_real_training_of_two_processes_is_one_job_with_two_mpiprocs(tmp_path):
    bring_up("pbs")
    work = distributed_workdir(tmp_path, "pbs")
    out = run_snakemake(
        work, f"{RUN_DIR}/param.hdf5", "--profile", "profiles/pbs", *GENERIC_FAST, *CONFIGS,
        env={"PATH": f"{PBS_BIN}{os.pathsep}{os.environ['PATH']}"}, timeout=420,
    )  # fmt: skip
    jobs = {jobid: pbs_record(jobid) for jobid in external_job_ids(out)}
    trains = [j for j in jobs.values() if j["Job_Name"].startswith("train.")]
    assert len(trains) == 1, jobs  # one job for the whole training
    assert trains[0]["Resource_List"]["select"] == "1:ncpus=2:mpiprocs=2:mem=3000mb"
    assert_same_training_as_two_local_processes(tmp_path, work, "mpirun")


# --- OpenPBS ---------------------------------------------------------------------------------


@pytest.mark.scheduler
@needs_mpi
def test_openpbs_mpiprocs_and_mpirun_form_one_training(tmp_path):
    bring_up("pbs")
    work = toy_workdir(tmp_path)
    out = run_snakemake(
        work, "--profile", "profiles/pbs", *GENERIC_FAST, TARGET,
        env={"PATH": f"{PBS_BIN}{os.pathsep}{os.environ['PATH']}"}, timeout=240,
    )  # fmt: skip
    (jobid,) = external_job_ids(out)

    def finished():
        job = pbs_record(jobid)
        return job if job and job["job_state"] == "F" else None

    job = wait_for(finished, 60, f"PBS's record of {jobid}")
    assert job["Exit_status"] == 0
    assert job["Resource_List"]["select"] == "1:ncpus=2:mpiprocs=2:mem=300mb"
    assert job["Resource_List"]["mpiprocs"] == 2
    assert_one_training_of_two(worker_records(work), "OMPI_COMM_WORLD_RANK")
    log = next((work / "logs" / "pbs").glob("*.OU")).read_text()
    assert "with mpirun" in log and "--hostfile" in log  # $PBS_NODEFILE: mpiprocs lines


# --- Grid Engine ------------------------------------------------------------------------------


@pytest.mark.scheduler
@needs_mpi
def test_grid_engine_parallel_environment_and_mpirun_form_one_training(tmp_path):
    bring_up("gridengine")
    work = toy_workdir(tmp_path)
    out = run_snakemake(work, "--profile", "profiles/uge", *GENERIC_FAST, TARGET, timeout=240)
    (jobid,) = external_job_ids(out)
    env = read_env_record(work / "results" / "env_train_dist_t.txt")
    assert env["JOB_ID"] == jobid and env["NSLOTS"] == "2"  # -pe mpi 2 granted

    def accounted():
        r = subprocess.run(["qacct", "-j", jobid], capture_output=True, text=True)
        return r.returncode == 0 and "granted_pe" in r.stdout and r.stdout

    record = wait_for(accounted, 60, f"qacct's record of {jobid}")
    assert re.search(r"granted_pe\s+mpi\b", record) and re.search(r"slots\s+2\b", record)
    assert_one_training_of_two(worker_records(work), "OMPI_COMM_WORLD_RANK")


# --- PJM (simulator) ----------------------------------------------------------------------------


@pytest.mark.scheduler
@needs_mpi
def test_pjm_simulator_mpi_processes_and_mpiexec_form_one_training(tmp_path):
    env = {
        "PATH": f"{PJM_SIM_DIR}{os.pathsep}{os.environ['PATH']}",
        "PJM_SIM_DIR": str(tmp_path / "pjm-state"),
    }
    work = toy_workdir(tmp_path)
    run_snakemake(work, "--profile", "profiles/pjm", *GENERIC_FAST, TARGET, env=env, timeout=240)
    (job_file,) = (tmp_path / "pjm-state" / "jobs").glob("*.json")
    job = json.loads(job_file.read_text())
    assert job["L"]["node"] == "1" and job["mpi"] == {"proc": "2"}
    assert ["--mpi", "proc=2"] == job["argv"][4:6]
    assert_one_training_of_two(worker_records(work), "OMPI_COMM_WORLD_RANK")
    log = next((work / "logs" / "pjm").glob("train_dist.*.out")).read_text()
    assert "with mpiexec" in log


@pytest.mark.scheduler
def test_pjm_simulator_mpiexec_refuses_more_processes_than_the_job_has(tmp_path):
    env = {**os.environ, "PJM_JOBID": "1", "PJM_MPI_PROC": "1"}
    r = subprocess.run(
        [PJM_SIM_DIR / "mpiexec", "-n", "2", "true"], capture_output=True, text=True, env=env
    )
    assert r.returncode != 0 and "--mpi proc=1" in r.stderr
    env.pop("PJM_JOBID")
    r = subprocess.run(
        [PJM_SIM_DIR / "mpiexec", "-n", "1", "true"], capture_output=True, text=True, env=env
    )
    assert r.returncode != 0 and "inside a PJM job" in r.stderr
