"""The site's set-up every job runs (profiles/lib/jobsetup.py): what it accepts and refuses,
and what each profile makes of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "profiles" / "lib"))
import jobsetup  # noqa: E402
import pbs_lib  # noqa: E402
import pjm_lib  # noqa: E402
import uge_lib  # noqa: E402
from clusterjob import SiteSettingError  # noqa: E402


def test_a_file_and_modules_become_the_jobs_first_lines(tmp_path):
    setup = tmp_path / "site.sh"
    setup.write_text("export MARKER=1\n")
    env = {"MNIST_JOB_SOURCE": str(setup), "MNIST_JOB_MODULES": "singularity/2.6.1  cuda"}
    job = jobsetup.job_setup(env)
    assert job["precommand"].startswith(f". {setup} && ")
    assert "module load singularity/2.6.1 cuda && " in job["precommand"]
    assert job["python"] == "login" and job["env"] == "export"
    bare = jobsetup.job_setup({})
    assert (bare["python"], bare["env"]) == ("login", "export")
    assert bare["precommand"] == jobsetup.login_python_guard()  # only the check, see below
    assert jobsetup.job_setup({"MNIST_JOB_PYTHON": "job"})["precommand"] == ""


def test_home_relative_file_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "jobenv.sh").write_text("")
    assert jobsetup.source_line({"MNIST_JOB_SOURCE": "~/jobenv.sh"}) == f". {tmp_path}/jobenv.sh"


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"MNIST_JOB_SOURCE": "/etc/profile; rm -rf ~"}, "MNIST_JOB_SOURCE"),
        ({"MNIST_JOB_SOURCE": "/etc/$(whoami)"}, "MNIST_JOB_SOURCE"),
        ({"MNIST_JOB_SOURCE": "/etc/profile\nmodule load x"}, "MNIST_JOB_SOURCE"),
        ({"MNIST_JOB_SOURCE": "relative/modules.sh"}, "MNIST_JOB_SOURCE"),
        ({"MNIST_JOB_SOURCE": "/no/such/modules.sh"}, "MNIST_JOB_SOURCE"),
        ({"MNIST_JOB_MODULES": "cuda && rm -rf ~"}, "MNIST_JOB_MODULES"),
        ({"MNIST_JOB_MODULES": "cuda `id`"}, "MNIST_JOB_MODULES"),
        ({"MNIST_JOB_MODULES": "cuda;id"}, "MNIST_JOB_MODULES"),
        ({"MNIST_JOB_PYTHON": "/usr/bin/python3"}, "MNIST_JOB_PYTHON"),
        ({"MNIST_JOB_ENV": "none"}, "MNIST_JOB_ENV"),
    ],
)
def test_refuses_what_a_job_would_run_differently_naming_the_variable(env, variable):
    with pytest.raises(SiteSettingError, match=variable):
        jobsetup.job_setup(env)


def test_missing_file_says_so():
    with pytest.raises(SiteSettingError, match="no such file"):
        jobsetup.job_setup({"MNIST_JOB_SOURCE": "/no/such/modules.sh"})


def test_modules_without_a_module_command_fail_with_the_fix(tmp_path):
    line = jobsetup.module_line({"MNIST_JOB_MODULES": "cuda"})
    r = subprocess.run(
        ["/bin/sh", "-c", f"{line} && echo ran"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 1 and "ran" not in r.stdout
    assert "MNIST_JOB_SOURCE" in r.stderr and "module" in r.stderr


PROPS = {"rule": "train", "threads": 1, "resources": {"runtime": 10}}
CLEAN = {"rule": "train", "threads": 1, "resources": {"runtime": 10, "job_env": "clean"}}


def test_clean_environment_drops_the_export_flag_of_each_scheduler():
    assert "-V" in pbs_lib.build_qsub_args(PROPS, "logs/")
    assert "-V" not in pbs_lib.build_qsub_args(CLEAN, "logs/")
    assert "-V" in uge_lib.build_qsub_args(PROPS, "logs/")
    assert "-V" not in uge_lib.build_qsub_args(CLEAN, "logs/")
    assert "-X" in pjm_lib.build_pjsub_args(PROPS)
    assert "-X" not in pjm_lib.build_pjsub_args(CLEAN)


def profile_settings(profile: str, env: dict, tmp_path):
    """What Snakemake reads from a profile with these variables set (its YTE block run)."""
    code = (
        "from snakemake.profiles import ProfileConfigFileParser as P; "
        f"print(dict(P().parse(open('profiles/{profile}/config.yaml'))))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("profile", ["slurm", "pbs", "uge", "pjm"])
def test_every_profile_gives_the_set_up_to_snakemake(profile, tmp_path):
    setup = tmp_path / "site.sh"
    setup.write_text("")
    env = {"MNIST_JOB_SOURCE": str(setup), "MNIST_JOB_MODULES": "cuda", "MNIST_JOB_PYTHON": "job"}
    r = profile_settings(profile, env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert f". {setup} &&" in r.stdout and "module load cuda" in r.stdout
    assert "software-deployment" not in r.stdout and "input-output" in r.stdout
    bad = profile_settings(profile, {"MNIST_JOB_SOURCE": "/x;id"}, tmp_path)
    assert bad.returncode != 0 and "MNIST_JOB_SOURCE" in bad.stderr


# --- real module system, real schedulers ------------------------------------------------

MODULES_INIT = Path("/etc/profile.d/modules.sh")
SITE_SNAKEFILE = """
rule all:
    input: "probe.txt"

rule probe:
    output: "probe.txt"
    log: "probe.log"
    shell:
        "(echo marker=${{MNIST_TEST_MARKER:-unset}} submitter=${{MNIST_TEST_SUBMITTER:-unset}};"
        " command -v marker-tool; marker-tool) > {output} 2> {log}"
"""


def site_module(tmp_path: Path) -> Path:
    """A modulefile that sets a marker and prepends a directory holding marker-tool to PATH."""
    bin_dir = tmp_path / "sitebin"
    bin_dir.mkdir()
    tool = bin_dir / "marker-tool"
    tool.write_text("#!/bin/sh\necho tool-ran\n")
    tool.chmod(0o755)
    modulefile = tmp_path / "modulefiles" / "mnistsite"
    modulefile.parent.mkdir()
    modulefile.write_text(
        f"#%Module1.0\nsetenv MNIST_TEST_MARKER loaded\nprepend-path PATH {bin_dir}\n"
    )
    return modulefile


@pytest.mark.scheduler
@pytest.mark.parametrize(
    "profile, scheduler",
    [("uge", "gridengine"), ("pbs", "pbs"), ("pjm", None), ("slurm", "slurm")],
)
def test_module_loaded_in_a_clean_job_through_the_profile(profile, scheduler, tmp_path):
    from schedulers.schedtest import PJM_SIM_DIR, bring_up, run_snakemake, skip_or_fail

    if not MODULES_INIT.exists():
        skip_or_fail("environment-modules is not installed (tests/run.sh installs it)")
    if scheduler:
        bring_up(scheduler)
    work = tmp_path / "work"
    work.mkdir()
    (work / "Snakefile").write_text(SITE_SNAKEFILE)
    shutil.copytree(REPO / "profiles", work / "profiles")
    env = {
        "MNIST_JOB_SOURCE": str(MODULES_INIT),
        "MNIST_JOB_MODULES": str(site_module(tmp_path)),
        # SLURM: plugin 2.8.0 always sends --export=ALL (the profile refuses "clean").
        "MNIST_JOB_ENV": "export" if profile == "slurm" else "clean",
        # Not in the submitter's environment: only the module can put it in the job's.
        "MNIST_TEST_MARKER": "",
        "MNIST_TEST_SUBMITTER": "exported",  # must not reach the clean job
    }
    # The PJM simulator's commands; PBS's qsub before Grid Engine's of the same name.
    first = {"pjm": str(PJM_SIM_DIR), "pbs": "/opt/pbs/bin"}.get(profile)
    if first:
        env["PATH"] = f"{first}:{os.environ['PATH']}"
    # SLURM's plugin waits 40 s before its first status check unless told otherwise.
    first_check = ["--slurm-init-seconds-before-status-checks", "2"] if profile == "slurm" else []
    run_snakemake(
        work, "--profile", f"profiles/{profile}", "--seconds-between-status-checks", "1",
        *first_check, "--latency-wait", "10", timeout=300, env=env,
    )  # fmt: skip
    probe = (work / "probe.txt").read_text()
    assert "marker=loaded" in probe and "tool-ran" in probe, probe
    if profile != "slurm":
        assert "submitter=unset" in probe, probe


def run_precommand(precommand: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", precommand + " && echo ran"],
                          capture_output=True, text=True)  # fmt: skip


def test_job_without_the_login_python_fails_saying_why(tmp_path):
    setup = tmp_path / "site.sh"
    setup.write_text("")
    env = {"MNIST_JOB_SOURCE": str(setup)}
    hidden = jobsetup.job_setup(env, executable=str(tmp_path / "login venv" / "python"))
    r = run_precommand(hidden["precommand"])
    assert r.returncode == 1 and "ran" not in r.stdout
    assert "MNIST_JOB_PYTHON=job" in r.stderr and "login venv" in r.stderr
    assert f"in this job (machine: {os.uname().machine})" in r.stderr  # the job's own machine
    seen = jobsetup.job_setup(env, executable=sys.executable)["precommand"]
    assert run_precommand(seen).stdout == "ran\n"
    job = jobsetup.job_setup({**env, "MNIST_JOB_PYTHON": "job"}, executable="/nowhere/python")
    assert job["precommand"] == f". {setup}"


def test_login_python_of_another_architecture_fails_saying_why(tmp_path):
    # Fugaku: the x86_64 login node's Python is on the shared /home, executable but not
    # runnable on an A64FX node ("Exec format error"); a path test would pass it.
    foreign = tmp_path / "python"
    foreign.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(57))  # an ELF header of no machine
    foreign.chmod(0o755)
    r = run_precommand(jobsetup.job_setup({}, executable=str(foreign))["precommand"])
    assert r.returncode == 1 and "ran" not in r.stdout
    assert f"{foreign} (" in r.stderr and "MNIST_JOB_PYTHON=job" in r.stderr
