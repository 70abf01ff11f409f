"""Resource values that could run a command or add an option where a job is submitted.

Every cluster profile gets each job's resources (rules, ``--set-resources``,
``--default-resources``, the profile, config/config.yaml). The PJM, PBS and Grid Engine submit
scripts pass them as argument lists, but the SLURM plugin (2.8.0) pastes several of them
unquoted into the sbatch command that it runs with ``shell=True``: mem_mb, mem_mb_per_cpu,
tasks, tasks_per_node, tasks_per_gpu, gpu and slurm_extra (submit_string.py, utils.py), so
``mem_mb_per_cpu="100; touch /tmp/x #"`` runs ``touch`` on the login node. No upstream issue
reports this (docs/bad-input.md has the report's text; the nearest are
snakemake-executor-plugin-slurm issues 29, 120 and 218 on quoting, and PR 358 quoting the
account, "see issue #354"). So every job's values are checked here before the first
submission, whatever the profile, and again right before each submission (values Snakemake
evaluates only then, retries): counts and sizes must be whole numbers, other values names or
paths, slurm_extra options of such characters only. The PJM/PBS/Grid Engine scripts then
check their site settings' exact forms again.
"""

from __future__ import annotations

import ast
import re
import shlex

# Read by schedulers as counts, sizes or minutes: a whole number, in these bounds.
# cpus_per_task/cpus_per_gpu below 0 mean "no CPU request" to the SLURM plugin.
YEAR_MINUTES = 365 * 24 * 60
WHOLE = {
    "_cores": (0, None),
    "_nodes": (0, None),
    "threads": (0, None),
    "mem_mb": (0, None),
    "mem_mib": (0, None),
    "disk_mb": (0, None),
    "disk_mib": (0, None),
    "mem_mb_per_cpu": (0, None),
    "runtime": (0, YEAR_MINUTES),
    "gpu": (0, None),
    "nodes": (1, None),
    "tasks": (0, None),
    "tasks_per_node": (0, None),
    "tasks_per_gpu": (0, None),
    "cpus_per_task": (None, None),
    "cpus_per_gpu": (None, None),
}
UNITS = {"runtime": "minutes", "mem_mb": "MB", "mem_mb_per_cpu": "MB per CPU"}
EXAMPLES = {"runtime": 60, "mem_mb": 4000, "mem_mb_per_cpu": 1000, "disk_mb": 10000}
# Snakemake's own human-readable sizes ("2 GB"), kept beside mem_mb/disk_mb.
SIZES = {"mem", "disk"}
SIZE = r"\d+(\.\d+)?\s?[KMGTPE]?i?B"
# A name, list of names or path: no whitespace, quotes or shell syntax, and no leading "-",
# so that it cannot become an option either.
# ("*": Grid Engine's queue@host patterns; such strings are quoted or passed as arguments.)
WORD = r"[A-Za-z0-9_./@%+,:=~*][A-Za-z0-9_./@%+,:=~*-]*"
WORD_FORM = (
    "a name or path of letters, digits and _ . / @ % + , : = ~ * - (not first), without "
    "spaces, quotes or shell syntax such as ; $ ` | & < > ( )"
)
OPTION = r"[A-Za-z0-9_./@%+,:=~-]+"
EXTRA_FORM = (
    "options separated by single spaces, each of letters, digits and _ . / @ % + , : = ~ -, "
    "e.g. slurm_extra=\"'--qos=long --mail-type=END'\" (no quotes inside, no ; $ ` | & < > ( ))"
)


class ResourceError(ValueError):
    """Resource values a submit host could misread; the message names rule, resource, form."""


def problem(name: str, value) -> str | None:
    """What is wrong with one evaluated resource value, or None when it is accepted."""
    if type(value).__name__ == "TBDString":
        return None  # evaluated right before submission: checked then (check_submission)
    if name in WHOLE:
        low, high = WHOLE[name]
        unit = f" of {UNITS[name]}" if name in UNITS else ""
        bounds = (
            f"from {low} to {high}"
            if low is not None and high is not None
            else f"of at least {low}"
            if low is not None
            else "(negative: none asked)"
        )
        form = f"must be a whole number{unit} {bounds}, e.g. {name}={EXAMPLES.get(name, 1)}"
        if high == YEAR_MINUTES:
            form += f" ({YEAR_MINUTES} minutes is 365 days)"
        if not isinstance(value, int) or isinstance(value, bool):
            return form
        if (low is not None and value < low) or (high is not None and value > high):
            return form
        return None
    if isinstance(value, bool) or isinstance(value, int):
        return None
    text = str(value)
    if name in SIZES:
        return None if re.fullmatch(SIZE, text) else "must be a size such as 4GB or '4 GB'"
    if name == "slurm_extra":  # pasted into the shell command as it is
        words = text.split(" ")
        if text == "" or all(re.fullmatch(OPTION, w) for w in words):
            return None
        return f"must be {EXTRA_FORM}"
    if name.endswith("_extra"):
        # The PJM/PBS/Grid Engine scripts split these like a shell would, and run no shell
        # (clusterjob.check_extra): quotes are fine, a line break is not.
        try:
            shlex.split(text)
        except ValueError:
            return "must be options split like a shell would, with every quote closed"
        return "must be on one line" if re.search(r"[\x00-\x1f\x7f]", text) else None
    if text == "" or re.fullmatch(WORD, text):
        return None
    return f"must be {WORD_FORM}"


def job_problems(job) -> list[str]:
    """One line per refused value of a Snakemake job (a group job: of each of its jobs)."""
    members = list(job.jobs) if getattr(job, "is_group", lambda: False)() else [job]
    lines = []
    for member in members:
        resources = dict(member.resources.items())
        resources.setdefault("threads", member.threads)
        for name, value in resources.items():
            wrong = problem(name, value)
            if wrong:
                lines.append(f"  rule {member.rule.name}: {name}={value!r} {wrong}")
    return lines


def raw_problems(resource_settings) -> list[str]:
    """Whole-number resources given as fractions: Snakemake rounds them (gpu=1.7 asks for 2)."""
    given = []
    overwrite = getattr(resource_settings, "_parsed_overwrite_resources", None) or {}
    for rule, resources in overwrite.items():
        given += [(f"--set-resources {rule}:{n}", n, r) for n, r in resources.items()]
    defaults = getattr(resource_settings, "_parsed_default_resources", None)
    if defaults is not None:
        given += [(f"--default-resources {n}", n, r) for n, r in defaults.items()]
    lines = []
    for where, name, resource in given:
        raw = getattr(resource, "raw", None)
        try:
            value = ast.literal_eval(raw) if isinstance(raw, str) else raw
        except (ValueError, SyntaxError):
            continue  # an expression: its value is checked per job
        if name in WHOLE and isinstance(value, float) and not value.is_integer():
            lines.append(
                f"  {where}={raw}: must be a whole number (Snakemake would round it to "
                f"{round(value)})"
            )
    return lines


def _raise(lines: list[str], when: str) -> None:
    if lines:
        raise ResourceError(
            f"resource values that a scheduler's submit command could misread, {when}:\n"
            + "\n".join(sorted(set(lines)))
            + "\nFix them where they are set: --set-resources RULE:NAME=VALUE, "
            "--default-resources, the profile's config.yaml, or config/config.yaml (resources:)."
            " The SLURM plugin puts some values into a shell command unquoted "
            "(docs/bad-input.md)."
        )


def check_run(workflow) -> None:
    """Refuse the run before its first submission; then check each job again at submission."""
    lines = raw_problems(workflow.resource_settings)
    for job in workflow.dag.needrun_jobs():
        lines += job_problems(job)
    _raise(lines, "nothing was submitted")
    _check_each_submission(workflow)


def check_submission(jobs) -> None:
    _raise([line for job in jobs for line in job_problems(job)], "this job was not submitted")


def _check_each_submission(workflow) -> None:
    """Values Snakemake evaluates only when a job is ready (input sizes, a retry's attempt)
    are checked right before the executor submits it: an error stops the run there."""
    executor = getattr(getattr(workflow, "scheduler", None), "_executor", None)
    if executor is None or getattr(executor, "_resource_safety", False):
        return
    submit = executor.run_jobs

    def run_jobs(jobs):
        check_submission(jobs)
        return submit(jobs)

    executor.run_jobs = run_jobs
    executor._resource_safety = True
