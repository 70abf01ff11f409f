"""`--config` values full of shell syntax never run as commands, locally or through a profile.

Snakemake 9.27 copies each `--config` argument into every cluster job's command line with
repr() quoting (snakemake issue 3297): with a ' in it, the job's shell would run `$(...)`
and backticks. Such values stop a cluster run before the first submission with a message
pointing to --configfile; values the shell reads back literally (", backticks, `$(...)`
without a ') reach the jobs as written. Local runs pass values to the steps in-process, so
every value works there. Real SLURM and Grid Engine on localhost, the PJM simulator, OpenPBS.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, copy_workflow, snakemake
from schedulers.schedtest import PJM_SIM_DIR, assert_nothing_executed, bring_up, run_snakemake

SAMPLE = REPO / "data" / "mnist-sample"
DATA = "results/mnist-sample/data.h5"

PROFILES = {
    "slurm": (
        "slurm",
        ["--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10"],
    ),
    "uge": ("gridengine", ["--seconds-between-status-checks", "1", "--latency-wait", "10"]),
    "pjm": (None, ["--seconds-between-status-checks", "1", "--latency-wait", "10"]),
    "pbs": ("pbs", ["--seconds-between-status-checks", "1", "--latency-wait", "10"]),
}


def mirrors_arg(*mirrors: str) -> str:
    return "download=" + json.dumps({"mirrors": list(mirrors), "default_mirrors": False})


def config_args(mirror: str) -> list[str]:
    """The sample dataset, downloaded from `mirror` alone, as --config values."""
    return ["--config", "dataset=mnist-sample", mirrors_arg(mirror, "sample-mirror")]


def evil_mirror(work: Path, quote: str) -> str:
    """A mirror path that runs `touch pwned_*` wherever a shell reads it unquoted.

    With a quote it also holds " and so, JSON-escaped, a backslash.
    """
    return f"{work}/it{quote}s `touch pwned_tick` $(touch pwned_subst)" + (quote and ' a"b')


@pytest.fixture
def work(tmp_path) -> Path:
    work = copy_workflow(tmp_path / "pipeline")
    shutil.copytree(SAMPLE, work / "sample-mirror")
    return work


def through_profile(work: Path, profile: str, env: dict[str, str], *args: str, **kwargs) -> str:
    """snakemake makes the sample's data through profiles/<profile>, polling it fast."""
    return run_snakemake(
        work,
        DATA,
        "--profile",
        f"profiles/{profile}",
        *PROFILES[profile][1],
        *args,
        env=env,
        **kwargs,
    )


def profile_env(name: str, tmp_path: Path) -> dict[str, str]:
    scheduler, _ = PROFILES[name]
    if scheduler:
        bring_up(scheduler)
    if name == "pjm":
        return {
            "PATH": f"{PJM_SIM_DIR}{os.pathsep}{os.environ['PATH']}",
            "PJM_SIM_DIR": str(tmp_path / "pjm-state"),
        }
    if name == "pbs":  # OpenPBS's qsub/qstat before Grid Engine's of the same names
        return {"PATH": f"/opt/pbs/bin{os.pathsep}{os.environ['PATH']}"}
    return {}


def assert_taken_literally(work: Path, mirror: str) -> None:
    """No part of the mirror ran as a command, and the download tried it by its very name."""
    assert_nothing_executed(work)
    log = (work / "logs" / "mnist-sample" / "download.log").read_text()
    assert f"{mirror}/train-images-idx3-ubyte.gz (attempt 1/1) failed" in log


def test_a_local_run_uses_any_value_literally(work):
    mirror = evil_mirror(work, "'")
    snakemake(work, DATA, *config_args(mirror))
    assert_taken_literally(work, mirror)
    assert (work / DATA).exists()


@pytest.mark.scheduler
@pytest.mark.parametrize("profile", PROFILES)
def test_a_value_the_jobs_shell_would_misread_stops_before_any_submission(work, tmp_path, profile):
    env = profile_env(profile, tmp_path)
    mirror = evil_mirror(work, "'")
    out = through_profile(work, profile, env, *config_args(mirror), check=False, timeout=120)
    assert "a --config value cannot be passed safely to cluster jobs" in out
    assert "Nothing was submitted" in out and "--configfile my.yaml" in out
    assert "Submitted job" not in out and "has been submitted" not in out
    assert not (work / DATA).exists() and not (work / "logs" / profile).exists()
    assert_nothing_executed(work)
    # The way out the message gives: the same value in a --configfile reaches the jobs intact.
    (work / "my.yaml").write_text(
        json.dumps(
            {
                "dataset": "mnist-sample",
                "download": json.loads(mirrors_arg(mirror, "sample-mirror")[9:]),
            }
        )
    )
    through_profile(work, profile, env, "--configfile", "my.yaml", timeout=300)
    assert_taken_literally(work, mirror)


@pytest.mark.scheduler
@pytest.mark.parametrize("profile", PROFILES)
def test_shell_syntax_the_jobs_shell_reads_literally_reaches_the_jobs(work, tmp_path, profile):
    env = profile_env(profile, tmp_path)
    mirror = evil_mirror(work, "")  # backticks and $(...), no '; " around the JSON strings
    through_profile(work, profile, env, *config_args(mirror), timeout=300)
    # preprocess ran as a cluster job, whose command line carried the value.
    assert (work / DATA).exists()
    assert_taken_literally(work, mirror)
