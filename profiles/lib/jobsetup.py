"""The site's set-up that every cluster job runs before its step (all four profiles).

Hand-written job scripts start with lines such as `source /etc/profile.d/modules.sh`
and `module load cuda`; these settings give the same lines to every job:

  MNIST_JOB_SOURCE   a file every job sources first (module init, a conda or Spack
                     set-up of your own), e.g. /etc/profile.d/modules.sh or ~/jobenv.sh
  MNIST_JOB_MODULES  modules every job loads, separated by spaces: "cuda/12.4 singularity"
  MNIST_JOB_ENV      "export" (default): the job gets the submitter's environment (qsub -V,
                     pjsub -X); "clean": it does not, and finds its software through the
                     set-up alone (PBS, Grid Engine, PJM; see profiles/README.md for SLURM)
  MNIST_JOB_PYTHON   "login" (default): jobs run the login node's interpreter by its
                     absolute path (Snakemake's default on a shared file system),
                     and a job that cannot start it stops with a message saying so;
                     "job": jobs run the `python` that the set-up puts on their PATH
                     (compute nodes of another architecture, e.g. Fugaku's A64FX)

They become Snakemake's `precommand` (run in the job's shell, joined with &&, before
`python -m snakemake`), so SLURM (plugin), PBS, Grid Engine and PJM apply them alike.
Nothing is passed through unchecked: a value must be a plain path or module names, so
the line a job runs is exactly what the user wrote. Standard library only.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys

from clusterjob import SiteSettingError

# Characters that mean nothing to a shell: the job's line is exactly the value.
_PATH = re.compile(r"(~/)?[A-Za-z0-9_./+@-]+")
_MODULE = re.compile(r"[A-Za-z0-9_.+@/-][A-Za-z0-9_./+@-]*")  # a path: a modulefile

# All of --shared-fs-usage but software-deployment: Snakemake then starts each job with
# `python` from the job's PATH instead of sys.executable, and deploys conda environments
# and container images inside the jobs (executors/remote.py, workflow.py of Snakemake 9).
SHARED_FS_JOB_PYTHON = ["input-output", "persistence", "sources", "source-cache",
                        "storage-local-copies"]  # fmt: skip

NO_MODULE_CMD = (
    "echo 'MNIST_JOB_MODULES: this job has no module command: set MNIST_JOB_SOURCE to your "
    "site'\"'\"'s module set-up (e.g. /etc/profile.d/modules.sh)' >&2"
)


def source_line(environ=os.environ) -> str:
    value = environ.get("MNIST_JOB_SOURCE", "").strip()
    if not value:
        return ""
    if not _PATH.fullmatch(value):
        raise SiteSettingError(
            f"MNIST_JOB_SOURCE={value!r} is not accepted: it must be one file's path of letters, "
            "digits, '_', '.', '/', '+', '@' and '-' (optionally starting with ~/), with no "
            "spaces, quotes, '$', ';' or other shell syntax: a job would run something else "
            "than you wrote. Put other commands in that file."
        )
    path = os.path.expanduser(value)
    if not os.path.isabs(path):
        raise SiteSettingError(
            f"MNIST_JOB_SOURCE={value!r} is not accepted: give an absolute path (or ~/...); "
            "jobs start in other directories"
        )
    if not os.path.isfile(path):
        raise SiteSettingError(
            f"MNIST_JOB_SOURCE={value!r}: no such file ({path}). Give the file your job "
            "scripts source, e.g. /etc/profile.d/modules.sh"
        )
    # "." not "source": Snakemake's job scripts run in /bin/sh, which may be dash.
    return f". {path}"


def module_line(environ=os.environ) -> str:
    value = environ.get("MNIST_JOB_MODULES", "").strip()
    if not value:
        return ""
    names = value.split()
    bad = [n for n in names if not _MODULE.fullmatch(n)]
    if bad:
        raise SiteSettingError(
            f"MNIST_JOB_MODULES={value!r} is not accepted: {bad[0]!r} is not a module name "
            "(letters, digits, '_', '.', '/', '+', '@', '-'; separate modules with spaces)"
        )
    guard = f"{{ command -v module >/dev/null 2>&1 || {{ {NO_MODULE_CMD}; exit 1; }}; }}"
    return f"{guard} && module load {' '.join(names)}"


def either(environ, variable: str, default: tuple[str, str], other: tuple[str, str]) -> str:
    """A setting of two values, each (value, what it means); unset is the default's."""
    value = environ.get(variable, "").strip() or default[0]
    if value not in (default[0], other[0]):
        raise SiteSettingError(
            f"{variable}={value!r} is not accepted: it must be '{default[0]}' ({default[1]}, "
            f"the default) or '{other[0]}' ({other[1]})"
        )
    return value


def python_mode(environ=os.environ) -> str:
    return either(
        environ,
        "MNIST_JOB_PYTHON",
        ("login", "the login node's interpreter path"),
        ("job", "the python on the job's PATH after the set-up"),
    )


def env_mode(environ=os.environ) -> str:
    return either(
        environ,
        "MNIST_JOB_ENV",
        ("export", "jobs get the submitter's environment"),
        ("clean", "they do not"),
    )


def login_python_guard(executable: str = sys.executable, machine: str = platform.machine()) -> str:
    """Stop a job that cannot run the login node's interpreter, saying why and the fix.

    It starts the interpreter (without site packages: a few milliseconds) rather than
    testing the path: on Fugaku the x86_64 login node's Python exists on the compute
    node's shared /home but cannot run on its A64FX ("Exec format error"). Without this
    the job's shell only says "not found" or "cannot execute binary file".
    """
    why = (
        f"MNIST_JOB_PYTHON=login: the Python of the login node, {executable} ({machine}), "
        "does not exist or cannot run in this job (machine: ",
        "): set MNIST_JOB_PYTHON=job and put a python with snakemake on the PATH of "
        "the job with MNIST_JOB_SOURCE or MNIST_JOB_MODULES (profiles/README.md)",
    )
    # Only $(uname -m) is left to the job's shell; the rest is quoted.
    message = f'{shlex.quote(why[0])}"$(uname -m)"{shlex.quote(why[1])}'
    run = f"{shlex.quote(executable)} -S -c '' 2>/dev/null"
    return f"{{ {run} || {{ echo {message} >&2; exit 1; }}; }}"


def job_setup(environ=os.environ, executable: str = sys.executable) -> dict:
    """What a profile's config.yaml needs: the precommand, and the python and env modes."""
    lines = [line for line in (source_line(environ), module_line(environ)) if line]
    if python_mode(environ) == "login":
        # After the set-up (which may mount or load what the interpreter needs).
        lines.append(login_python_guard(executable))
    return {
        "precommand": " && ".join(lines),
        "python": python_mode(environ),
        "env": env_mode(environ),
    }


def exports_environment(resources: dict) -> bool:
    """False when the job must not get the submitter's environment (resource job_env)."""
    value = str(resources.get("job_env") or "export")
    if value not in ("export", "clean"):
        raise SiteSettingError(
            f"resource job_env (from MNIST_JOB_ENV)={value!r}: 'export' or 'clean'"
        )
    return value == "export"
