"""A train job killed at its time limit is retried with more time and resumes, on real
SLURM, real Grid Engine and the PJM simulator (through the profiles, as users run them).

The training takes about twice the first attempt's limit (1 minute, the least Snakemake
can ask for), so it is killed mid-run; the retry asks for 2 minutes (runtime x attempt),
resumes from the checkpoint and must end with exactly the weights of an uninterrupted local
run. The scheduler's own records (sacct, qacct, pjstat -H) must show every attempt.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from conftest import copy_workflow, snakemake
from resumecheck import assert_resumed_as_uninterrupted
from schedulers.schedtest import PJM_SIM_DIR, bring_up, run_snakemake, wait_for

pytestmark = pytest.mark.scheduler

EPOCHS = 150  # ~0.6 s each on one idle core: longer than the first attempt's minute
CONFIG = f"""\
dataset: mnist-sample
models: [cnn]
hyperparameters: {{cnn: {{epochs: {EPOCHS}, batch_size: 16, filters: [4, 8, 8]}}}}
resources:
  train: {{threads: 1, mem_mb: 1500, runtime: 1}}
checkpoint: {{every_minutes: 0.1}}
"""
RUN = "mnist-sample/cnn/default"
TARGET = f"results/{RUN}/param.hdf5"
# More attempts (3, 4, ... minutes) in case the machine is busy (a load of 12 on the 2-core
# test machine took four); on an idle one two suffice.
RETRIES = [TARGET, "--retries", "5", "--configfile", "config/resume-test.yaml"]


def pipeline(path):
    work = copy_workflow(path / "pipeline")  # run_snakemake writes path / "snakemake.out"
    (work / "config" / "resume-test.yaml").write_text(CONFIG)
    return work


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same training, uninterrupted, run locally."""
    work = pipeline(tmp_path_factory.mktemp("reference"))
    snakemake(work, TARGET, "--configfile", "config/resume-test.yaml", timeout=900)
    return work


def assert_attempts(attempts: list[tuple[bool, str]]) -> None:
    """(succeeded, record) per train attempt: killed ones, then one that succeeded."""
    assert len(attempts) >= 2, attempts
    assert [ok for ok, _ in attempts] == [False] * (len(attempts) - 1) + [True], attempts


def test_slurm_time_limit_retry_resumes(tmp_path, reference):
    bring_up("slurm")
    accounting = subprocess.run(
        ["sacctmgr", "-n", "list", "cluster"], capture_output=True, text=True
    ).stdout.strip()
    if not accounting:
        pytest.skip("SLURM accounting (slurmdbd) is not running: slurm_up.sh SLURM_ACCOUNTING=1")
    work = pipeline(tmp_path)
    out = run_snakemake(
        work,
        "--profile",
        "profiles/slurm",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--latency-wait",
        "10",
        *RETRIES,
        env={"MNIST_SLURM_STATUS": "sacct"},
        timeout=1800,
    )
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)

    def train_records():
        listing = subprocess.run(
            [
                "sacct",
                "-X",
                "--parsable2",
                "--noheader",
                "--name",
                run_id,
                "--format=JobIDRaw,Comment,State,Timelimit",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [line.split("|") for line in listing.splitlines()]
        rows = [r for r in rows if r[1].startswith("rule_train")]
        return rows if rows and rows[-1][2] == "COMPLETED" else None

    rows = wait_for(train_records, 60, "sacct records of the train attempts")
    assert_attempts(
        [(state == "COMPLETED", f"{jid} {state} {limit}") for jid, _, state, limit in rows]
    )
    assert all(state == "TIMEOUT" for _, _, state, _ in rows[:-1]), rows
    # runtime x attempt: 1, 2, (3) minutes
    assert [limit for *_, limit in rows] == [f"00:0{n}:00" for n in range(1, len(rows) + 1)]
    assert_resumed_as_uninterrupted(work, reference, RUN, EPOCHS)


def test_grid_engine_h_rt_retry_resumes(tmp_path, reference):
    bring_up("gridengine")
    work = pipeline(tmp_path)
    out = run_snakemake(
        work,
        "--profile",
        "profiles/uge",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "10",
        *RETRIES,
        timeout=1800,
    )
    jobids = re.findall(r"Submitted (?:group )?job \d+ with external jobid '(\d+)'", out)

    def qacct(jobid):
        r = subprocess.run(["qacct", "-j", jobid], capture_output=True, text=True)
        fields = dict(
            (line.partition(" ")[0], line.partition(" ")[2].strip())
            for line in r.stdout.splitlines()
        )
        return fields if "exit_status" in fields else None

    records = [wait_for(lambda j=j: qacct(j), 30, f"qacct record of job {j}") for j in jobids]
    trains = [r for r in records if r["jobname"].startswith("train")]
    assert_attempts(
        [
            (
                r["failed"] == "0" and r["exit_status"] == "0",
                f"{r['jobnumber']} failed={r['failed']}",
            )
            for r in trains
        ]
    )
    # Killed by the scheduler at h_rt (failed 37: "qmaster enforced h_rt ... limit").
    assert all(
        r["failed"].startswith("37") or r["exit_status"] in ("137", "143", "138")
        for r in trains[:-1]
    ), trains
    # runtime x attempt: h_rt of 60, 120, (180) seconds
    limits = [re.search(r"h_rt=(\d+)", r["category"]).group(1) for r in trains]
    assert limits == [str(60 * n) for n in range(1, len(trains) + 1)], limits
    assert_resumed_as_uninterrupted(work, reference, RUN, EPOCHS)


def test_pjm_elapse_retry_resumes(tmp_path, reference):
    env = {
        "PATH": f"{PJM_SIM_DIR}{os.pathsep}{os.environ['PATH']}",
        "PJM_SIM_DIR": str(tmp_path / "pjm-state"),
        "PJM_SIM_KILL_GRACE": "10",
    }
    work = pipeline(tmp_path)
    run_snakemake(
        work,
        "--profile",
        "profiles/pjm",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "10",
        *RETRIES,
        env=env,
        timeout=1800,
    )
    listing = subprocess.run(
        ["pjstat", "-H", "-v", "--choose", "jid,jnam,st,ec,pc"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.splitlines()
    header = listing[0].split()
    jobs = [dict(zip(header, line.split(), strict=True)) for line in listing[1:]]
    trains = [j for j in jobs if j["JOB_NAME"].startswith("train")]
    assert_attempts([(j["EC"] == "0" and j["PC"] == "0", str(j)) for j in trains])
    assert all(j["PC"] == "11" for j in trains[:-1]), trains  # 11: elapse limit exceeded
    assert_resumed_as_uninterrupted(work, reference, RUN, EPOCHS)
