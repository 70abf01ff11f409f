"""One adapter per scheduler (its profile, its own records of a run's jobs, how to cancel one)
and the bodies tests/test_scheduler_*.py share.

Each scheduler's file calls a body with its adapter, then checks what only that scheduler
records (SLURM's states, PBS's Exit_status and select, Grid Engine's category, PJM's
directives): the same run, the same checks, written once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from schedulers.schedtest import (
    EVIL_TAG,
    PJM_SIM_DIR,
    assert_nothing_executed,
    bring_up,
    only,
    read_env_record,
    real_workdir,
    run_snakemake,
    start_snakemake,
    toy_workdir,
    wait_for,
    wait_snakemake,
)

# Poll soon after submitting (Snakemake's defaults: 10 s, SLURM's plugin 40 s).
GENERIC_FAST = ["--seconds-between-status-checks", "1", "--latency-wait", "10"]
PBS_BIN = Path("/opt/pbs/bin")
# PBS's qsub/qstat first: Grid Engine's commands of the same names are in /usr/bin.
PBS_ENV = {"PATH": f"{PBS_BIN}{os.pathsep}{os.environ['PATH']}"}


@dataclass
class Job:
    """One job of a run as its scheduler recorded it."""

    id: str
    rule: str
    ok: bool  # ended and succeeded, by the scheduler's own record
    record: dict

    def __repr__(self) -> str:  # what an assertion's message shows
        return f"Job({self.id} {self.rule} ok={self.ok} {self.record})"


def submitted_ids(out: str) -> list[str]:
    """Job ids, in submission order, from cluster-generic's log lines (PBS, Grid Engine, PJM)."""
    return re.findall(r"Submitted (?:group )?job \d+ with external jobid '([^']+)'", out)


class Cluster:
    name = ""  # its profile: profiles/<name>
    up: str | None = None  # schedtest.bring_up(up) starts it; None: nothing to start
    fast = GENERIC_FAST
    job_id_variable = ""  # what the job's environment calls its id

    @property
    def profile(self) -> str:
        return f"profiles/{self.name}"

    def bring_up(self) -> None:
        if self.up:
            bring_up(self.up)

    def env(self, tmp_path: Path) -> dict[str, str]:
        return {}

    def jobs(self, out: str, env: dict[str, str]) -> list[Job]:
        """The run's jobs (``out``: its output), in submission order, once they have ended."""
        raise NotImplementedError

    def running(self, rule: str, work: Path, env: dict[str, str]) -> str | None:
        """The id of a running job of ``rule`` (in ``work`` where the scheduler says)."""
        raise NotImplementedError

    def cancel(self, jobid: str, env: dict[str, str]) -> None:
        raise NotImplementedError


class Slurm(Cluster):
    name, up = "slurm", "slurm"
    fast = ["--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10"]
    job_id_variable = "SLURM_JOB_ID"

    def env(self, tmp_path):
        return {"MNIST_SLURM_STATUS": "squeue"}

    def jobs(self, out, env):
        """squeue --states=all (finished jobs stay listed for MinJobAge, 300 s)."""
        run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
        listing = subprocess.run(
            ["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%k|%T"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        jobs = []
        for line in listing.splitlines():
            jobid, comment, state = (part.strip() for part in line.split("|"))
            rule = re.match(r"rule_([A-Za-z0-9]+)", comment).group(1)
            jobs.append(Job(jobid, rule, state == "COMPLETED", {"state": state}))
        return sorted(jobs, key=lambda j: int(j.id))

    def running(self, rule, work, env):
        listing = subprocess.run(
            ["squeue", "--noheader", "--states=RUNNING", "--format=%i|%k"],
            capture_output=True, text=True,
        ).stdout  # fmt: skip
        ids = [ln.split("|")[0] for ln in listing.splitlines() if f"rule_{rule}" in ln]
        return ids[0] if ids else None

    def cancel(self, jobid, env):
        subprocess.run(["scancel", jobid], check=True)

    @staticmethod
    def accounting() -> bool:
        """slurmdbd keeps the accounting records sacct reads (slurm_up.sh SLURM_ACCOUNTING=1)."""
        r = subprocess.run(["sacctmgr", "-n", "list", "cluster"], capture_output=True, text=True)
        return r.returncode == 0 and bool(r.stdout.strip())

    @staticmethod
    def accounted(out: str, fields: str) -> list[list[str]]:
        """sacct's records of the run's jobs (``out``: its output), ``fields`` of each."""
        run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
        listing = subprocess.run(
            ["sacct", "-X", "--parsable2", "--noheader", "--name", run_id, f"--format={fields}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return [line.split("|") for line in listing.splitlines()]

    @staticmethod
    def scontrol(jobid: str) -> str:
        return subprocess.run(
            ["scontrol", "show", "job", jobid], capture_output=True, text=True, check=True
        ).stdout


class GridEngine(Cluster):
    name, up = "uge", "gridengine"
    job_id_variable = "JOB_ID"

    @staticmethod
    def qacct(jobid: str) -> dict[str, str]:
        """The accounting record of a finished job (waits briefly for it to be written)."""

        def record():
            r = subprocess.run(["qacct", "-j", jobid], capture_output=True, text=True)
            if r.returncode != 0:
                return None
            fields = {}
            for line in r.stdout.splitlines():
                key, _, value = line.partition(" ")
                fields[key] = value.strip()
            return fields if "exit_status" in fields else None

        return wait_for(record, 30, f"qacct record of job {jobid}")

    def jobs(self, out, env):
        jobs = []
        for jobid in submitted_ids(out):
            r = self.qacct(jobid)
            ok = r["failed"] == "0" and r["exit_status"] == "0"
            jobs.append(Job(jobid, r["jobname"].split(".")[0], ok, r))
        return jobs

    def running(self, rule, work, env):
        listing = subprocess.run(["qstat"], capture_output=True, text=True).stdout
        ids = [
            f[0]
            for f in (ln.split() for ln in listing.splitlines())
            if len(f) > 4 and f[2].startswith(rule) and f[4] == "r"
        ]
        return ids[0] if ids else None

    def cancel(self, jobid, env):
        subprocess.run(["qdel", jobid], check=True, capture_output=True)


class OpenPBS(Cluster):
    name, up = "pbs", "pbs"
    job_id_variable = "PBS_JOBID"

    def env(self, tmp_path):
        return dict(PBS_ENV)

    @staticmethod
    def record(jobid: str) -> dict:
        """PBS's record of a job (qstat -x -f -F json), once it has finished (job_state F)."""

        def finished():
            r = subprocess.run(
                [PBS_BIN / "qstat", "-x", "-f", "-F", "json", jobid],
                capture_output=True, text=True,
            )  # fmt: skip
            if r.returncode != 0:
                return None
            job = next(iter(json.loads(r.stdout, strict=False)["Jobs"].values()))
            return job if job["job_state"] == "F" else None

        return wait_for(finished, 60, f"PBS's record of finished job {jobid}")

    def jobs(self, out, env):
        jobs = []
        for jobid in submitted_ids(out):
            r = self.record(jobid)
            r["id"] = jobid
            # substate 92: finished (93 failed, 91 deleted: a job qdel ended has Exit_status 0)
            ok = r.get("Exit_status") == 0 and r["substate"] == 92
            jobs.append(Job(jobid, r["Job_Name"].split(".")[0], ok, r))
        return jobs

    def running(self, rule, work, env):
        r = subprocess.run([PBS_BIN / "qstat", "-f", "-F", "json"], capture_output=True, text=True)
        jobs = (
            json.loads(r.stdout or "{}", strict=False).get("Jobs", {}) if r.returncode == 0 else {}
        )
        ids = [
            jid
            for jid, j in jobs.items()
            if j["Job_Name"] == rule
            and j["job_state"] == "R"
            and j["Variable_List"].get("PBS_O_WORKDIR") == str(work)
        ]
        return ids[0] if ids else None

    def cancel(self, jobid, env):
        subprocess.run([PBS_BIN / "qdel", jobid], check=True, capture_output=True)


class PJM(Cluster):
    """The simulator (tests/schedulers/pjm_sim): PJM itself cannot be installed here."""

    name = "pjm"
    job_id_variable = "PJM_JOBID"

    def __init__(self, kill_grace: int = 1):
        self.kill_grace = kill_grace  # seconds from the SIGTERM (pjdel, elapse limit) to SIGKILL

    def env(self, tmp_path):
        """PATH with the simulator first, and a private simulator state directory."""
        return {
            "PATH": f"{PJM_SIM_DIR}{os.pathsep}{os.environ['PATH']}",
            "PJM_SIM_DIR": str(tmp_path / "pjm-state"),
            "PJM_SIM_KILL_GRACE": str(self.kill_grace),
        }

    @staticmethod
    def history(env: dict[str, str]) -> list[dict[str, str]]:
        """pjstat -H, parsed: every ended job in the simulator's state directory."""
        out = subprocess.run(
            ["pjstat", "-H", "-v", "--choose", "jid,jnam,st,ec,pc,rscg,elpl"],
            capture_output=True, text=True, check=True, env={**os.environ, **env},
        ).stdout  # fmt: skip
        lines = out.splitlines()
        header = lines[0].split()
        return [dict(zip(header, ln.split(), strict=True)) for ln in lines[1:]]

    @staticmethod
    def sim_job(env: dict[str, str], jobid: str) -> dict:
        """The simulator's full record of a job: what pjsub was given."""
        return json.loads((Path(env["PJM_SIM_DIR"]) / "jobs" / f"{jobid}.json").read_text())

    def jobs(self, out, env):
        return [
            Job(j["JOB_ID"], j["JOB_NAME"].split(".")[0], j["ST"] == "EXT" and j["EC"] == "0", j)
            for j in self.history(env)
        ]

    def running(self, rule, work, env):
        listing = subprocess.run(
            ["pjstat", "-v", "--choose", "jid,jnam,st"],
            capture_output=True, text=True, env={**os.environ, **env},
        ).stdout  # fmt: skip
        ids = [
            f[0]
            for f in (ln.split() for ln in listing.splitlines()[1:])
            if f[1].startswith(rule) and f[2] == "RUN"
        ]
        return ids[0] if ids else None

    def cancel(self, jobid, env):
        subprocess.run(["pjdel", jobid], check=True, env={**os.environ, **env}, capture_output=True)


def toy_run(cluster: Cluster, tmp_path: Path, env: dict | None = None):
    """The toy workflow with a GPU on train and a tag full of shell syntax.

    Every rule but the localrule download ran as one job that succeeded, the train job's
    environment names its id, and nothing was run through a shell. Returns the workflow's
    folder, its jobs by rule and the train job's environment record.
    """
    work = toy_workdir(tmp_path)
    env = {**cluster.env(tmp_path), **(env or {})}
    out = run_snakemake(
        work, "--profile", cluster.profile, *cluster.fast, "--config", "gpu=1", f"tag={EVIL_TAG}",
        env=env, timeout=300,
    )  # fmt: skip
    jobs = cluster.jobs(out, env)
    # download is a localrule: it ran on the "login node", not through the scheduler.
    assert sorted(j.rule for j in jobs) == ["evaluate", "preprocess", "report", "train"], jobs
    assert all(j.ok for j in jobs), jobs
    by_rule = {j.rule: j for j in jobs}
    train_env = read_env_record(only(list((work / "results").glob("env_train_*.txt"))))
    assert train_env[cluster.job_id_variable] == by_rule["train"].id
    assert_nothing_executed(tmp_path, Path.cwd())
    return work, by_rule, train_env


PREP = "results/prep.txt"


def cancelled_and_retried(cluster: Cluster, tmp_path: Path) -> tuple[list[Job], str]:
    """A preprocess job cancelled while it runs (scancel, qdel, pjdel) fails; Snakemake retries
    it and the retry replaces the cancelled attempt's partial output. Returns the preprocess
    jobs (the cancelled one first) and the run's output."""
    work = toy_workdir(tmp_path)
    env = cluster.env(tmp_path)
    proc = start_snakemake(
        work, "--profile", cluster.profile, *cluster.fast, PREP, "--config", "hang_once=600",
        env=env,
    )  # fmt: skip

    def running_preprocess():
        return (work / ".hang_marker").exists() and cluster.running("preprocess", work, env)

    jobid = wait_for(running_preprocess, 120, "the first preprocess job to run", proc)
    cluster.cancel(jobid, env)
    out = wait_snakemake(proc, 240)
    preps = [j for j in cluster.jobs(out, env) if j.rule == "preprocess"]
    assert [j.id for j in preps][:1] == [jobid] and [j.ok for j in preps] == [False, True], preps
    # The cancelled attempt's "partial" file was not kept: the retry rewrote it.
    assert (work / PREP).read_text().strip() == "raw"
    return preps, out


def stopped_at_the_time_limit_and_retried(cluster: Cluster, tmp_path: Path) -> list[Job]:
    """A preprocess job asking 1 minute hangs past it: the scheduler stops it with SIGTERM
    first (the warning a training checkpoints on: the rule's shell records it), then kills it;
    Snakemake retries it and the retry replaces the partial output. Returns the attempts."""
    work = toy_workdir(tmp_path)
    env = cluster.env(tmp_path)
    out = run_snakemake(
        work, "--profile", cluster.profile, *cluster.fast, PREP,
        "--set-resources", "preprocess:runtime=1", "--config", "hang_once=600",
        env=env, timeout=300,
    )  # fmt: skip
    preps = [j for j in cluster.jobs(out, env) if j.rule == "preprocess"]
    assert [j.ok for j in preps] == [False, True], preps
    assert (work / ".term_marker").exists()
    assert (work / PREP).read_text().strip() == "raw"
    return preps


def real_pipeline(cluster: Cluster, tmp_path: Path, env: dict | None = None) -> dict:
    """The real pipeline (the sample, softmax, one epoch, a GPU asked for train) through the
    profile: every step but download a job that succeeded, and the report. Returns the jobs
    by rule, a list each."""
    work = real_workdir(tmp_path)
    env = {**cluster.env(tmp_path), **(env or {})}
    out = run_snakemake(
        work, "--profile", cluster.profile, *cluster.fast,
        "--configfile", "config/scheduler-test.yaml", env=env, timeout=480,
    )  # fmt: skip
    jobs = cluster.jobs(out, env)
    by_rule: dict[str, list[Job]] = {}
    for job in jobs:
        by_rule.setdefault(job.rule, []).append(job)
    assert {"preprocess", "train", "evaluate", "report"} <= set(by_rule), out[-3000:]
    assert "download" not in by_rule
    assert all(j.ok for j in jobs), jobs
    assert (work / "results" / "mnist-sample" / "report.html").exists()
    return by_rule
