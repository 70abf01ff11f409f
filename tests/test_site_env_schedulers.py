"""Jobs that cannot see the login node's Python (profiles/lib/jobsetup.py, MNIST_JOB_PYTHON)
and Snakemake's own `--sdm env-modules`, through real schedulers.

A login node's interpreter the compute nodes cannot use: snakemake runs from a virtual
environment mounted at a path in a private mount namespace of its own (`unshare --mount`,
like a software volume only the login node mounts). The schedulers' daemons, started
outside it, run the jobs where that path is an empty directory. The site's set-up
(MNIST_JOB_SOURCE) puts another environment's `python` on the job's PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import REPO

# What the step runs in: the interpreter of the job's own Snakemake, and the set-up's marker.
WHICH_SNAKEFILE = """
rule all:
    input: "which.txt"

rule which:
    output: "which.txt"
    log: "which.log"
    run:
        import os, sys
        with open(output[0], "w") as f:
            site = os.environ.get("MNIST_TEST_SITE", "unset")
            f.write(f"python={sys.executable}\\nsite={site}\\n")
"""

# The schedulers' profiles, and what to put first on PATH for their commands.
SCHEDULERS = {"slurm": ("slurm", None), "pbs": ("pbs", "/opt/pbs/bin")}
# SLURM's plugin first looks at a job 40 s after submitting it, unless told.
FIRST_CHECK = {"slurm": ["--slurm-init-seconds-before-status-checks", "2"], "pbs": []}


def make_env(path: Path) -> Path:
    """A virtual environment on the system's Python, with its packages (snakemake, plugins)."""
    venv.create(path, system_site_packages=True, symlinks=True)
    return path / "bin" / "python"


def hidden_login_python(tmp_path: Path) -> tuple[Path, Path]:
    """(the real environment, the empty mount point the submitter sees it at)."""
    real = tmp_path / "login-env"
    make_env(real)
    mount_point = tmp_path / "login-mount"  # empty for every process outside the namespace
    mount_point.mkdir()
    return real, mount_point


def site_setup(tmp_path: Path) -> tuple[Path, Path]:
    """The compute nodes' environment and the file that puts it first on a job's PATH."""
    python = make_env(tmp_path / "site-env")
    setup = tmp_path / "site.sh"
    setup.write_text(
        f"PATH={python.parent}:$PATH\nexport PATH\n"
        "MNIST_TEST_SITE=sourced\nexport MNIST_TEST_SITE\n"
    )
    return python, setup


def run_in_login_namespace(work: Path, real: Path, mount_point: Path, env: dict, *args: str):
    """snakemake run by the environment at mount_point, which exists only for it."""
    script = 'mount --bind "$1" "$2" && shift 2 && "$0" -m snakemake "$@"'
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
           str(mount_point / "bin" / "python"), str(real), str(mount_point), *args]  # fmt: skip
    return subprocess.run(
        cmd, cwd=work, capture_output=True, text=True, timeout=420, env={**os.environ, **env}
    )


def can_unshare() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare --mount fails: {probe.stderr}"


def job_logs(work: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (work / "logs").rglob("*") if p.is_file())


@pytest.mark.scheduler
@pytest.mark.parametrize("profile", list(SCHEDULERS))
@pytest.mark.parametrize("python_mode", ["job", "login"])
def test_job_that_cannot_see_the_login_python(profile, python_mode, tmp_path):
    from schedulers.schedtest import bring_up, skip_or_fail

    if reason := can_unshare():
        skip_or_fail(reason)
    scheduler, first_on_path = SCHEDULERS[profile]
    bring_up(scheduler)
    real, mount_point = hidden_login_python(tmp_path)
    site_python, setup = site_setup(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "Snakefile").write_text(WHICH_SNAKEFILE)
    shutil.copytree(REPO / "profiles", work / "profiles")
    env = {
        "MNIST_JOB_SOURCE": str(setup),
        "MNIST_JOB_PYTHON": python_mode,
        # PBS: nothing of the submitter's; SLURM: plugin 2.8.0 always exports (README).
        "MNIST_JOB_ENV": "clean" if profile == "pbs" else "export",
        "MNIST_TEST_SITE": "",  # only the set-up can set it in a job
    }
    if first_on_path:
        env["PATH"] = f"{first_on_path}:{os.environ['PATH']}"
    r = run_in_login_namespace(
        work, real, mount_point, env, "--profile", f"profiles/{profile}", "--retries", "0",
        "--seconds-between-status-checks", "1", "--latency-wait", "5", *FIRST_CHECK[profile],
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert not (mount_point / "bin").exists()  # the job's side: the path is not there
    if python_mode == "job":
        assert r.returncode == 0, out[-6000:]
        which = (work / "which.txt").read_text()
        assert f"python={site_python}\n" in which and "site=sourced" in which, which
    else:
        assert r.returncode != 0 and not (work / "which.txt").exists(), out[-6000:]
        said = out + job_logs(work)
        hidden = mount_point / "bin" / "python"
        assert f"Python of the login node, {hidden} (" in said, said[-6000:]
        assert "set MNIST_JOB_PYTHON=job" in said, said[-6000:]


def test_login_python_outside_the_namespace_is_really_hidden(tmp_path):
    """The premise of the test above, without a scheduler: outside, the path is empty."""
    if reason := can_unshare():
        pytest.skip(reason)
    real, mount_point = hidden_login_python(tmp_path)
    python = mount_point / "bin" / "python"
    inside = subprocess.run(
        ["unshare", "--mount", "sh", "-c", f'mount --bind "{real}" "{mount_point}" && '
         f'"{python}" -c "import sys, snakemake; print(sys.executable)"'],
        capture_output=True, text=True,
    )  # fmt: skip
    assert inside.returncode == 0 and inside.stdout.strip() == str(python), inside.stderr
    assert not python.exists()
    assert sys.executable != str(python)


# --- Snakemake's own --sdm env-modules: config `envmodules` per rule ----------------------

TRAIN_LOG = "logs/mnist-sample/softmax/default/train.log"
PARAM = "results/mnist-sample/softmax/default/param.hdf5"
# Snakemake runs a rule's commands in bash, which needs a `module` of its own: a local run
# inherits environment-modules' exported function (BASH_FUNC_module%) from the login shell;
# jobs get it from BASH_ENV (Lmod's profile sets that itself).
BASH_MODULES = "/usr/share/modules/init/bash"


@pytest.mark.scheduler
@pytest.mark.parametrize("where", ["local", "slurm", "pbs"])
def test_envmodules_of_the_config_are_loaded_in_train(where, tmp_path):
    from schedulers.schedtest import bring_up, real_workdir, skip_or_fail
    from test_site_env import MODULES_INIT, site_module

    if not (MODULES_INIT.exists() and Path(BASH_MODULES).exists()):
        skip_or_fail("environment-modules is not installed (tests/run.sh installs it)")
    modulefile = site_module(tmp_path)
    work = real_workdir(tmp_path)
    config = work / "config" / "scheduler-test.yaml"
    config.write_text(config.read_text() + f"envmodules: {{train: [{modulefile}]}}\n")
    args = [PARAM, "--sdm", "env-modules", "--configfile", str(config)]
    env = dict(os.environ)
    if where == "local":
        args += ["--cores", "2"]
    else:
        bring_up(where)
        args += ["--profile", f"profiles/{where}", "--retries", "0", "--latency-wait", "10"]
        args += ["--seconds-between-status-checks", "2", *FIRST_CHECK[where]]
    if where != "local":
        # The README's recipe: SLURM drops exported functions (BASH_FUNC_*) even with
        # --export=ALL, and a clean PBS job has nothing of the submitter's.
        setup = tmp_path / "modules-for-bash.sh"
        setup.write_text(f". {MODULES_INIT}\nBASH_ENV={BASH_MODULES}\nexport BASH_ENV\n")
        env["MNIST_JOB_SOURCE"] = str(setup)
    if where == "pbs":
        env["MNIST_JOB_ENV"] = "clean"
        env["PATH"] = f"/opt/pbs/bin:{env['PATH']}"
    # The submitting shell: a login shell with environment-modules set up, as on a cluster.
    r = subprocess.run(
        ["bash", "-c", f'. {MODULES_INIT} && exec "$0" -m snakemake "$@"', sys.executable,
         *args],
        cwd=work, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-8000:]
    log = (work / TRAIN_LOG).read_text()
    assert f"environment modules: {modulefile}\n" in log, log[:2000]
