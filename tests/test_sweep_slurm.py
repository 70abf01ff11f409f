"""A parameter study through `snakemake --profile profiles/slurm` on the local one-node SLURM.

With job grouping on, the runs of a study are packed into few sbatch jobs instead of two
jobs per run (tests/schedulers/slurm_up.sh brings SLURM up; skipped where it cannot).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import copy_workflow
from schedulers.schedtest import bring_up, run_snakemake

pytestmark = pytest.mark.scheduler

# Poll soon after submitting (plugin default: 40 s) to keep the test short.
FAST = ["--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10"]
STUDY = {
    "dataset": "mnist-sample",
    "models": ["softmax"],
    "hyperparameters": {"softmax": {"epochs": 1}},
    "resources": {
        "train": {"threads": 1, "mem_mb": 1000, "runtime": 10},
        "evaluate": {"threads": 1, "mem_mb": 1000, "runtime": 10},
    },
    "sweep": {
        "seeds": [0, 1],
        "threads": 1,
        "families": {"softmax": {"grid": {"learning_rate": [0.01, 0.1]}}},
    },
}
# STUDY has 4 runs (2 learning rates x 2 seeds): the refusal below names that count. What goes
# through SLURM is 2 runs (seed 0 only): they show the packing into one group job and into one
# job array as 4 would, with half the trainings. Aggregating over seeds: tests/test_e2e_sweep.py.
SUBMITTED = {**STUDY, "sweep": {**STUDY["sweep"], "seeds": [0]}}
SUBMITTED_RUNS = 2
SETTINGS_CSV = Path("results/mnist-sample/sweep/settings.csv")


@pytest.fixture(scope="module", autouse=True)
def slurm():
    bring_up("slurm")


def run_study(directory: Path, *args: str, study: dict = STUDY, **kwargs) -> tuple[Path, str]:
    """The study in a scratch copy of the workflow, through profiles/slurm: (the copy, output)."""
    work = copy_workflow(directory)
    (work / "study.yaml").write_text(yaml.safe_dump(study))
    profile = ["--profile", "profiles/slurm", *FAST, "--configfile", "study.yaml"]
    return work, run_snakemake(work, *profile, *args, **kwargs)


def settings_lines(work: Path) -> int:
    """Lines of the study's settings.csv: the header, then one per setting (its seeds pooled)."""
    return len((work / SETTINGS_CSV).read_text().splitlines())


def squeue_all(jobs: str, fields: str) -> list[str]:
    """squeue's line for each of the jobs, finished ones too (kept for MinJobAge)."""
    return subprocess.run(
        ["squeue", "--states=all", "--noheader", f"--format={fields}", "--jobs", jobs],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def test_grouped_study_submits_fewer_jobs_than_runs(tmp_path):
    work, out = run_study(
        tmp_path / "study",
        # Both runs (train + evaluate each) in one job; --cores caps a group job's width at
        # the test node's 2 CPUs, so they run side by side.
        "--group-components",
        f"sweep={SUBMITTED_RUNS}",
        "--cores",
        "2",
        study=SUBMITTED,
        timeout=540,
    )
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", out)
    # preprocess, one group of the 2 runs, report (download and the aggregate run locally);
    # ungrouped, each run is a job of its own: 2 + 2.
    assert len(submitted) == 3 < SUBMITTED_RUNS + 2, out[-4000:]
    assert len(re.findall(r"Group job sweep", out)) == 1
    # The group job ran both runs' training (one train.log each).
    assert len(list((work / "logs").rglob("train.log"))) == SUBMITTED_RUNS, out[-4000:]
    states = squeue_all(",".join(submitted), "%T")
    assert states == ["COMPLETED"] * 3, states
    assert settings_lines(work) == 1 + 2  # header + 2 settings


def array_task_ids(parent: str) -> list[str]:
    """The scheduler's records of an array job's tasks: ``<parent>_<index>`` IDs.

    sacct where accounting is kept, else squeue (which keeps finished jobs for MinJobAge).
    """
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", parent, "--format=JobID,State"],
        capture_output=True,
        text=True,
    )
    if sacct.returncode == 0 and sacct.stdout.strip():
        lines = sacct.stdout.split()
    else:
        lines = squeue_all(parent, "%i|%T")
    return sorted(line for line in lines if re.fullmatch(rf"{parent}_\d+\|COMPLETED", line))


def test_ungrouped_study_trainings_go_out_as_one_job_array(tmp_path):
    study = {**SUBMITTED, "sweep": {**SUBMITTED["sweep"], "group": False}}  # arrays take no groups
    work, out = run_study(
        tmp_path / "array",
        "--slurm-array-jobs",
        "train_study",  # a study run's training and evaluation (workflow/rules/evaluate.smk)
        study=study,
        timeout=900,  # three rounds of sbatch (preprocess, train_study, report) on a busy node
    )
    # The plugin names each task's log <array job id>_<task index>.log under its rule.
    logs = sorted((work / "logs" / "slurm" / "rule_train_study").rglob("*.log"))
    ids = {re.fullmatch(r"(\d+)_(\d+)\.log", log.name).groups() for log in logs}
    parents = {parent for parent, _ in ids}
    assert len(logs) == SUBMITTED_RUNS and len(parents) == 1, (logs, out[-4000:])
    # Each task ran its own run's training (profiles/slurm: --wrap, not the plugin's script):
    # a task's log shows the array's first job, then the job the task ran.
    trained = {re.findall(r"wildcards: (.*)", log.read_text())[-1] for log in logs}
    assert len(trained) == SUBMITTED_RUNS, trained
    (parent,) = parents
    records = array_task_ids(parent)
    expected = [f"{parent}_{i}|COMPLETED" for i in range(1, SUBMITTED_RUNS + 1)]
    assert records == sorted(expected), records
    assert settings_lines(work) == 1 + 2


def test_what_keeps_a_study_from_going_out_as_arrays_is_named_before_any_submission(tmp_path):
    _, out = run_study(
        tmp_path / "refused",  # the study grouped, as by default
        "--slurm-array-jobs",
        "train_study",
        "--jobs",
        "2",
        check=False,
    )
    assert "the study cannot go out as SLURM job arrays" in out, out[-4000:]
    assert "set sweep.group: false" in out
    assert "--jobs 2: below the study's 4 runs" in out and "issue 473" in out
    assert not re.findall(r"submitted with SLURM jobid", out)
