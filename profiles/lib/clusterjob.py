#!/usr/bin/env python3
"""The profiles' one entry point, and what every scheduler shares (PBS, Grid Engine, PJM).

    clusterjob.py submit <scheduler> JOBSCRIPT   prints the job id
    clusterjob.py status <scheduler> JOBID       prints running | success | failed

snakemake-executor-plugin-cluster-generic runs these (profiles/<scheduler>/config.yaml
names them, see profile()); cancelling is the scheduler's own qdel / pjdel. What differs
between schedulers is in <scheduler>_lib.py beside this file: its site settings, how a
job's resources become submit options, and how to read the scheduler's answers. All of
profiles/lib is standard library only, so a copy of profiles/ on a cluster works with
the login node's python3, nothing installed.

Nothing here goes through a shell: every value that came from the workflow
(config, wildcards, resources) ends up as one element of an argument list, and
every site setting is checked against what its scheduler accepts before it is
used (a comma in a queue name must not add a resource request).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


class SiteSettingError(ValueError):
    """A site setting or job property the scheduler would misread; the message says the fix."""


# --- job properties -------------------------------------------------------------

_PROPS_RE = re.compile(r"^# properties = (.*)$", re.MULTILINE)


def read_job_properties(jobscript_text: str) -> dict:
    """The JSON Snakemake writes into each jobscript ("# properties = {...}")."""
    m = _PROPS_RE.search(jobscript_text)
    if not m:
        raise ValueError("no '# properties = ...' line in the jobscript")
    return json.loads(m.group(1))


_APPTAINER_RE = re.compile(
    r"--(?:software-deployment-method|deployment-method|sdm)((?:\s+[^\s-]\S*)+)"
)


def uses_apptainer(jobscript_text: str) -> bool:
    """True when the job runs with --software-deployment-method apptainer."""
    return any("apptainer" in m.group(1).split() for m in _APPTAINER_RE.finditer(jobscript_text))


_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def job_name(props: dict, max_len: int = 63) -> str:
    """Rule plus wildcard values, limited to [A-Za-z0-9_.-] and starting with a letter.

    Every scheduler here accepts such a name (Grid Engine and PBS need the letter first).
    """
    parts = [str(props.get("rule", "snakejob"))]
    parts += [str(v) for v in (props.get("wildcards") or {}).values()]
    name = _NAME_BAD.sub("_", ".".join(parts))
    if not name[:1].isalpha():
        name = "j" + name
    return name[:max_len]


def runtime_seconds(resources: dict, minimum: int = 60) -> int | None:
    """The `runtime` resource (minutes) in whole seconds, at least `minimum`; None if unset."""
    runtime = resources.get("runtime")
    if runtime in (None, ""):
        return None
    try:
        minutes = float(runtime)
    except (TypeError, ValueError):
        minutes = math.nan
    if not math.isfinite(minutes) or minutes < 0:
        raise SiteSettingError(
            f"resource runtime must be a number of minutes (e.g. runtime=90), not {runtime!r}: "
            "fix it in config/config.yaml (resources:) or in --set-resources"
        )
    return max(minimum, int(math.ceil(minutes * 60)))


def format_hms(seconds: int) -> str:
    """Seconds -> HH:MM:SS (hours may exceed 24), the time format of qsub and pjsub."""
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def int_resource(resources: dict, key: str) -> int:
    value = resources.get(key) or 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SiteSettingError(f"resource {key} must be a whole number, not {value!r}") from None


@dataclass(frozen=True)
class Shape:
    """How many nodes a job spans and how many processes (tasks) run on each."""

    nodes: int = 1
    tasks: int = 1

    @property
    def per_node(self) -> int:
        return self.tasks // self.nodes

    @property
    def distributed(self) -> bool:
        """More than one process or node: the rule starts its processes with mpirun etc."""
        return self.tasks > 1 or self.nodes > 1


def job_shape(resources: dict) -> Shape:
    """Shape from Snakemake's standard resources `nodes` and `tasks` (both default 1).

    The train rule sets them for distribution: {mode: processes} (mnistflow.launch).
    """
    nodes = max(1, int_resource(resources, "nodes"))
    tasks = max(1, int_resource(resources, "tasks"))
    if tasks < nodes or tasks % nodes:
        raise SiteSettingError(
            f"resources tasks={tasks} and nodes={nodes}: every node must run the same number "
            "of processes (tasks a multiple of nodes); fix distribution in config/config.yaml"
        )
    return Shape(nodes, tasks)


def gpu_model_request(resources: dict, gpus: int, scheduler: str, setting: str) -> str:
    """ "<resource>=<model>" for a job's `gpu_model` (config resources.train.gpu_model), or "".

    Neither PBS nor Grid Engine has a standard way to ask for a GPU model: a site defines
    its own resource for it (PBS: a host-level string resource in the select; Grid
    Engine: a string complex), which `setting` names (its value arrives here as the
    resource `setting` stands for, already checked). Without it the job is refused.
    """
    model = str(resources.get("gpu_model") or "").strip()
    if not model:
        return ""
    fix = "fix resources.train.gpu_model in config/config.yaml, or leave it empty"
    if not re.fullmatch(NAME, model):
        raise SiteSettingError(f"resource gpu_model={model!r} is not accepted: {NAME_FORM}; {fix}")
    if gpus <= 0:
        raise SiteSettingError(
            f"resource gpu_model={model!r} asks for a GPU model but no GPUs: set "
            f"resources.train.gpu to the number of GPUs too, or leave gpu_model empty"
        )
    variable, resource = setting.split(":")
    name = resources.get(resource)
    if not name:
        raise SiteSettingError(
            f"resource gpu_model={model!r}: {scheduler} has no standard request for a GPU "
            f"model, each site names its own: set {variable} to your site's resource for it "
            f"(the name in '<name>={model}', from the site's user guide), or leave "
            "resources.train.gpu_model empty"
        )
    return f"{name}={model}"


# --- site settings ------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """A site setting: the environment variable a user sets, the resource that carries it
    to the submit script, and the values its scheduler accepts."""

    variable: str  # e.g. MNIST_PBS_QUEUE
    resource: str  # e.g. pbs_queue
    pattern: str  # a full match of this regex is accepted
    form: str  # the accepted form, in words, for the error message
    default: str = ""
    free_form: bool = False  # more submit options, split like a shell would (options())

    def check(self, value: str, where: str = "") -> str:
        value = value.strip()
        if value and not re.fullmatch(self.pattern, value):
            raise SiteSettingError(
                f"{where or self.variable}={value!r} is not accepted: it must be {self.form}. "
                f"Set {self.variable} to such a value, or leave it empty."
            )
        return value

    def options(self, values: dict[str, str]) -> list[str]:
        """This free-form setting's value in `values` as submit options (check_extra)."""
        return check_extra(self.variable, values.get(self.resource, ""))


def extra_options(scheduler: str, submit: str) -> Setting:
    """MNIST_<SCHEDULER>_EXTRA: any further options of the scheduler's submit command."""
    return Setting(
        f"MNIST_{scheduler.upper()}_EXTRA",
        f"{scheduler}_extra",
        r"[^\x00-\x1f\x7f]*",
        f"{submit} options on one line",
        free_form=True,
    )


# Building blocks for Setting patterns: names without the separators (",", "=",
# ":", "+", whitespace) that schedulers use between resource items.
NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
NAME_FORM = "a name of letters, digits, '_', '.' and '-' (no commas, '=', spaces or quotes)"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_extra(variable: str, value: str) -> list[str]:
    """Split free-form scheduler options like a shell would (no shell runs); clear errors."""
    if CONTROL.search(value.replace("\t", " ").replace("\n", " ")):
        raise SiteSettingError(f"{variable} contains control characters; remove them")
    try:
        args = shlex.split(value)
    except ValueError as e:
        raise SiteSettingError(
            f"{variable}={value!r} is not accepted: it must be options split like a shell "
            f"would, with every quote closed ({e}), e.g. \"-l 'software=abc'\""
        ) from None
    bad = [a for a in args if CONTROL.search(a)]
    if bad:
        raise SiteSettingError(f"{variable} holds an option with a newline or tab: {bad[0]!r}")
    return args


def settings_from_environment(settings: list[Setting], environ=os.environ) -> dict[str, str]:
    """{resource: value} for every site setting that is set; refuses any value not accepted.

    Called while Snakemake reads the profile (config.yaml's YTE block), so a bad
    value stops the run before anything is submitted; the submit scripts check
    the values again as they arrive (per-rule --set-resources included).
    """
    values = {}
    for s in settings:
        value = s.check(environ.get(s.variable, s.default))
        if value:
            values[s.resource] = value
    for s in settings:
        if s.free_form:
            s.options(values)  # an unclosed quote stops the run here, not at the first submit
    return values


def site_settings(module: ModuleType, environ=os.environ) -> dict[str, str]:
    """A scheduler's site settings from the environment, checked: {resource: value}.

    What a scheduler needs beyond each value's own form (PBS's abci mode needs a
    project) is its module's check_site(values).
    """
    values = settings_from_environment(module.SETTINGS, environ)
    if hasattr(module, "check_site"):
        module.check_site(values)
    return values


def check_resources(settings: list[Setting], resources: dict) -> dict[str, str]:
    """The site settings among a job's resources, each checked; {resource: value}."""
    values = {}
    for s in settings:
        raw = resources.get(s.resource)
        if raw is not None:
            value = s.check(str(raw), f"resource {s.resource} (from {s.variable})")
            if value:
                values[s.resource] = value
    return values


# --- running the scheduler's commands ------------------------------------------------


class CommandMissing(Exception):
    """The scheduler's command does not exist at all: no later poll will find it either."""


def query(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a status command; CommandMissing when it is not installed / not on PATH."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise CommandMissing(
            f"{cmd[0]!r} was not found: run snakemake where the scheduler's commands are on PATH "
            "(a login node), or load their module first"
        ) from None


def run_submit(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise OSError(f"{cmd[0]!r} was not found: submit from a login node") from None


# --- jobs that are nowhere to be seen --------------------------------------------------


def missing_for_too_long(state_dir: Path, jobid: str, grace_s: float, now: float | None = None):
    """Remember when a job was first missing; True once it has been gone for grace_s.

    A job can be briefly invisible (just submitted, between the live list and the
    history or accounting); only one missing for longer than grace_s counts as lost.
    """
    now = time.time() if now is None else now
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = state_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', jobid)}.missing"
    if not marker.exists():
        marker.write_text(str(now))
        return False
    try:
        first = float(marker.read_text() or now)
    except ValueError:
        first = now
    return now - first > grace_s


def clear_missing(state_dir: Path, jobid: str) -> None:
    (state_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', jobid)}.missing").unlink(missing_ok=True)


def grace_seconds(variable: str, default: float = 600) -> float:
    raw = os.environ.get(variable, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        print(f"{variable}={raw!r} is not a number of seconds; using {default}", file=sys.stderr)
        return default


# --- the entry point -------------------------------------------------------------------

SCHEDULERS = ("pbs", "uge", "pjm")
HERE = Path(__file__).resolve().parent


def scheduler_module(name: str) -> ModuleType:
    """<name>_lib beside this file (pbs_lib, uge_lib, pjm_lib, slurm_lib)."""
    return importlib.import_module(f"{name}_lib")


def command(module: ModuleType, name: str) -> str:
    """A scheduler command, e.g. qstat, or what PBS_QSTAT (UGE_QSTAT, PJM_PJSTAT...) names."""
    return os.environ.get(f"{module.PREFIX}_{name.upper()}", name)


def log_dir(module: ModuleType) -> Path:
    """Where the scheduler writes the jobs' own logs: MNIST_<PREFIX>_LOGDIR, logs/<name>."""
    return Path(os.environ.get(f"MNIST_{module.PREFIX}_LOGDIR", f"logs/{module.SCHEDULER}"))


def submit(module: ModuleType, jobscript: Path) -> str:
    """Submit one Snakemake jobscript; the scheduler's job id.

    The options come from the job properties Snakemake embeds in the jobscript
    (never from a shell-formatted string); a site setting the scheduler would
    misread stops here, before its submit command runs.
    """
    text = jobscript.read_text()
    logdir = log_dir(module)
    args = module.submit_args(read_job_properties(text), text, str(logdir.resolve()) + "/")
    logdir.mkdir(parents=True, exist_ok=True)
    cmd = [command(module, module.SUBMIT), *args, str(jobscript)]
    proc = run_submit(cmd, cwd=logdir if module.SUBMIT_IN_LOGDIR else None)
    try:
        return module.submitted_job_id(proc)
    except ValueError as e:
        raise ValueError(f"{e}\n  command: {cmd}") from None


def status(module: ModuleType, jobid: str) -> str:
    """running, success or failed for one job id.

    module.find_job asks the scheduler: (result, why), or None where the job is
    nowhere to be seen. A query that fails (a busy server) says "running" and the
    next poll decides; a job missing for longer than MNIST_<PREFIX>_MISSING_GRACE
    seconds (default 600) is "failed"; a command that does not exist raises
    CommandMissing (the run stops).
    """
    name = module.SCHEDULER
    grace = grace_seconds(f"MNIST_{module.PREFIX}_MISSING_GRACE")
    state_dir = Path(f".snakemake/{name}_status")
    try:
        found = module.find_job(jobid, lambda c: command(module, c))
    except (OSError, subprocess.TimeoutExpired, RuntimeError, ValueError) as e:
        print(f"{name} status: query failed, assuming job {jobid} still runs: {e}", file=sys.stderr)
        return "running"
    if found is None:
        if missing_for_too_long(state_dir, jobid, grace):
            print(
                f"{name} status: job {jobid} not found by {module.LOOKS_IN} for {grace:.0f}s",
                file=sys.stderr,
            )
            return "failed"
        return "running"
    clear_missing(state_dir, jobid)
    result, why = found
    if result == "failed":
        print(f"{name} status: job {jobid} failed: {why}", file=sys.stderr)
    return result


USAGE = "usage: clusterjob.py submit|status {" + "|".join(SCHEDULERS) + "} JOBSCRIPT|JOBID"


def main(argv: list[str]) -> int:
    """Clean one-line errors, never a traceback.

    status exits 0 whatever the job did, non-zero only when the scheduler's command
    does not exist: the cluster-generic plugin then stops the run ("Failed to obtain
    job status") instead of polling forever; our message on stderr says why.
    """
    if len(argv) != 3 or argv[0] not in ("submit", "status") or argv[1] not in SCHEDULERS:
        print(USAGE, file=sys.stderr)
        return 2
    action, name, arg = argv
    module = scheduler_module(name)
    where = f"{name} {action}"
    try:
        if action == "status":
            print(status(module, arg))
        else:
            print(submit(module, Path(arg).resolve()))
    except CommandMissing as e:
        print(f"{where}: {e}", file=sys.stderr)
        return 3
    except SiteSettingError as e:
        print(f"{where}: nothing submitted: {e}", file=sys.stderr)
        return 1
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        print(f"{where}: {e}", file=sys.stderr)
        return 1
    return 0


# --- what a profile's config.yaml reads ----------------------------------------------------


@dataclass(frozen=True)
class Profile:
    job: dict  # jobsetup.job_setup(): precommand, python and env modes
    site: dict  # the scheduler's site settings, checked: {resource: value}
    precommand: str = ""  # the scheduler's own (<name>_lib.PRECOMMAND), then the site's set-up
    submit_cmd: str = ""  # cluster-generic-submit-cmd (run in a shell)
    status_cmd: str = ""  # cluster-generic-status-cmd (run in a shell)
    cancel_cmd: str = ""  # cluster-generic-cancel-cmd (run without a shell: one program)
    shared_fs_usage: tuple = ()  # MNIST_JOB_PYTHON=job: all of it but software-deployment


def profile(name: str, environ=os.environ) -> Profile:
    """Everything a profile's config.yaml needs, read while Snakemake reads the profile.

    A bad site setting raises here, so the run stops before anything is submitted.
    The commands name this file by its absolute path, quoted for the shell the
    plugin runs them in ("{" doubled: the plugin formats the submit command with
    the job's wildcards first).
    """
    import jobsetup  # imports this module: here, not at the top

    module = scheduler_module(name)
    job = jobsetup.job_setup(environ)
    if job["env"] == "clean" and getattr(module, "NO_CLEAN_ENV", ""):
        raise SiteSettingError(module.NO_CLEAN_ENV)
    site = site_settings(module, environ)
    shared_fs = tuple(jobsetup.SHARED_FS_JOB_PYTHON) if job["python"] == "job" else ()
    lines = [getattr(module, "PRECOMMAND", ""), job["precommand"]]
    precommand = " && ".join(line for line in lines if line)
    if name not in SCHEDULERS:  # slurm: its own executor plugin runs sbatch
        return Profile(job, site, precommand, shared_fs_usage=shared_fs)
    entry = shlex.quote(str(HERE / "clusterjob.py"))
    return Profile(
        job,
        site,
        precommand,
        shared_fs_usage=shared_fs,
        submit_cmd=f"{entry} submit {name}".replace("{", "{{").replace("}", "}}"),
        status_cmd=f"{entry} status {name}",
        cancel_cmd=command(module, module.CANCEL),
    )


if __name__ == "__main__":
    # Through the module's own name: the scheduler modules and jobsetup import
    # `clusterjob`, and must raise the SiteSettingError that main() catches.
    from clusterjob import main as _main

    sys.exit(_main(sys.argv[1:]))
