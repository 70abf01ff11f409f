"""mnistflow.place: which process am I, checked against the variables each launcher really
sets (our run_workers, SLURM's srun, Open MPI's mpirun, PMI/PMIx)."""

from __future__ import annotations

import pytest

from mnistflow.place import LaunchError, Process, this_process


def test_nothing_set_is_a_single_process():
    assert this_process({}) == Process(0, 1, None)
    assert this_process({"PATH": "/bin"}).is_first


def test_our_own_variables_win():
    env = {
        "MNISTFLOW_PROCESS_INDEX": "1",
        "MNISTFLOW_PROCESS_COUNT": "2",
        "MNISTFLOW_COORDINATOR": "127.0.0.1:4000",
        "SLURM_PROCID": "0",
        "SLURM_STEP_ID": "0",
        "SLURM_STEP_NUM_TASKS": "1",
    }
    assert this_process(env) == Process(1, 2, "127.0.0.1:4000")


def test_slurm_inside_an_srun_step():
    env = {
        "SLURM_JOB_ID": "17",
        "SLURM_STEP_ID": "1",
        "SLURM_PROCID": "1",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_NTASKS": "2",
        "MNISTFLOW_COORDINATOR": "node01:41234",
        "MNISTFLOW_PROCESS_COUNT": "2",
    }
    assert this_process(env) == Process(1, 2, "node01:41234")


def test_slurm_batch_step_variables_do_not_make_a_worker():
    """A 2-task job's batch script sees SLURM_PROCID=0 SLURM_NTASKS=2 without any srun."""
    env = {"SLURM_JOB_ID": "17", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    assert this_process(env) == Process(0, 1, None)


def test_open_mpi_wins_over_slurm_batch_variables():
    env = {
        "SLURM_JOB_ID": "17",
        "SLURM_PROCID": "0",
        "SLURM_NTASKS": "2",
        "OMPI_COMM_WORLD_RANK": "1",
        "OMPI_COMM_WORLD_SIZE": "2",
        "MNISTFLOW_COORDINATOR": "vm:5000",
    }
    assert this_process(env) == Process(1, 2, "vm:5000")


def test_pmi_and_pmix():
    env = {"PMI_RANK": "2", "PMI_SIZE": "4", "MNISTFLOW_COORDINATOR": "h:1"}
    assert this_process(env) == Process(2, 4, "h:1")
    env = {"PMIX_RANK": "1", "SLURM_STEP_NUM_TASKS": "2", "MNISTFLOW_COORDINATOR": "h:1"}
    assert this_process(env) == Process(1, 2, "h:1")
    with pytest.raises(LaunchError, match="PMIX_RANK is set but no process count"):
        this_process({"PMIX_RANK": "0"})


def test_one_process_needs_no_coordinator():
    env = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1"}
    assert this_process(env) == Process(0, 1, None)


def test_no_coordinator_is_a_clear_error():
    env = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2"}
    with pytest.raises(LaunchError) as e:
        this_process(env)
    message = str(e.value)
    assert "process 1 of 2" in message and "SLURM" in message
    assert "MNISTFLOW_COORDINATOR is not set" in message and "run_workers" in message


def test_count_mismatch_names_both_counts():
    env = {
        "OMPI_COMM_WORLD_RANK": "0",
        "OMPI_COMM_WORLD_SIZE": "3",
        "MNISTFLOW_PROCESS_COUNT": "2",
        "MNISTFLOW_COORDINATOR": "vm:5000",
    }
    with pytest.raises(LaunchError, match="mismatch: Open MPI .* says 3 .* asked for 2"):
        this_process(env)


def test_expected_processes_but_no_launcher():
    with pytest.raises(LaunchError, match="asked for 2 processes .* no launcher"):
        this_process({"MNISTFLOW_PROCESS_COUNT": "2", "MNISTFLOW_COORDINATOR": "h:1"})


@pytest.mark.parametrize(
    "env, match",
    [
        ({"MNISTFLOW_PROCESS_INDEX": "one", "MNISTFLOW_PROCESS_COUNT": "2"}, "not a whole"),
        ({"MNISTFLOW_PROCESS_INDEX": "0"}, "MNISTFLOW_PROCESS_COUNT is not"),
        ({"MNISTFLOW_PROCESS_INDEX": "2", "MNISTFLOW_PROCESS_COUNT": "2"}, "not in 0..1"),
        ({"OMPI_COMM_WORLD_RANK": "0"}, "OMPI_COMM_WORLD_SIZE is not"),
        ({"PMI_RANK": "0"}, "PMI_SIZE is not"),
        (
            {"PMI_RANK": "0", "PMI_SIZE": "2", "MNISTFLOW_COORDINATOR": "no-port"},
            "is not host:port",
        ),
    ],
)
def test_bad_variables_are_named(env, match):
    with pytest.raises(LaunchError, match=match):
        this_process(env)
