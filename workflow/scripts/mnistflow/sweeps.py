"""Parameter studies: expand the config's ``sweep`` section into runs with stable, readable names.

A family's study is the union of its grid (every combination of the listed values) and its
explicit settings, each trained once per seed. A setting only lists the hyperparameters it
changes; the rest come from the family's ``hyperparameters`` in the config. A run is named
after what it changes, with keys sorted, so reordering keys or values renames nothing:

    batch_size=64+learning_rate=0.01+seed=1   (directory results/<dataset>/<family>/<name>/)

A family's ``random`` block adds ``samples`` settings drawn from distributions with a sampling
``seed`` (random search): the same seed gives the same settings, and sampled floats keep
4 significant digits so their names stay readable (``learning_rate=0.0123``).

A family's ``halving`` block (successive halving, mnistflow.halving) sets its runs' ``epochs``
to the last rung: the rung trainings stop early, the promoted runs resume.

The setting ``{}`` (the config's own hyperparameters) is named ``base``. Names that would be
too long or hold unusual characters become ``h<10 hex digits>``, a hash of the setting; the
hyperparameters are always in the run's ``metrics.json`` and the study's ``runs.csv``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
from dataclasses import dataclass

import jsonschema

from mnistflow import halving
from mnistflow.hyperparameter_values import value_order

BASE_SETTING = "base"
MAX_SETTING_NAME = 120  # characters; keeps run directories well below file-name limits
NAME_PART = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class SweepRun:
    family: str
    name: str  # the run's directory name: "<setting>+seed=<seed>"
    setting: str  # the setting's name: what all seeds of one setting share
    overrides: dict  # the hyperparameters this setting changes, keys sorted
    seed: int
    hyperparameters: dict  # everything the run trains with, seed included, keys sorted


def _format_value(value) -> str | None:
    """A value as it appears in a name, or None when it cannot appear there readably."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        text = "-".join(repr(v) for v in value)  # e.g. cnn filters [32, 64] -> 32-64
    else:
        return None
    return text if NAME_PART.fullmatch(text) else None


def setting_name(overrides: dict) -> str:
    """``key=value`` pairs joined by ``+``, keys sorted; a hash when that would be unreadable."""
    if not overrides:
        return BASE_SETTING
    parts = [(key, _format_value(overrides[key])) for key in sorted(overrides)]
    name = "+".join(f"{key}={text}" for key, text in parts)
    if all(text is not None for _, text in parts) and len(name) <= MAX_SETTING_NAME:
        return name
    canonical_json = json.dumps(overrides, sort_keys=True, separators=(",", ":"))
    return "h" + hashlib.sha1(canonical_json.encode()).hexdigest()[:10]


def run_name(setting: str, seed: int) -> str:
    return f"{setting}+seed={seed}"


DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
SIGNIFICANT_DIGITS = 4


def _round(value: float) -> float:
    """``value`` to SIGNIFICANT_DIGITS significant digits: short names, same value every run."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _draw(rng: random.Random, distribution: dict):
    (kind, spec) = next(iter(distribution.items()))
    if kind == "uniform":
        return _round(rng.uniform(spec[0], spec[1]))
    if kind == "loguniform":
        return _round(math.exp(rng.uniform(math.log(spec[0]), math.log(spec[1]))))
    if kind == "int":
        return rng.randint(spec[0], spec[1])
    return spec[rng.randrange(len(spec))]  # choice


def sampled_settings(random_search: dict) -> list[dict]:
    """``samples`` settings drawn with the sampling ``seed``; keys drawn in sorted order.

    random.Random seeded with a string is the same on every platform and Python 3 version.
    """
    rng = random.Random(f"mnistflow-random-search:{random_search.get('seed', 0)}")
    distributions = random_search["distributions"]
    keys = sorted(distributions)
    return [
        {key: _draw(rng, distributions[key]) for key in keys}
        for _ in range(random_search["samples"])
    ]


def distribution_errors(path: str, distribution) -> list[str]:
    """Problems with one distribution, each naming it and the fix."""
    usage = (
        "use one of {uniform: [low, high]}, {loguniform: [low, high]} (low > 0), "
        "{int: [low, high]}, {choice: [value, ...]}"
    )
    if not isinstance(distribution, dict) or len(distribution) != 1:
        return [f"  {path}: a distribution is one of {', '.join(DISTRIBUTIONS)}; {usage}"]
    (kind, spec) = next(iter(distribution.items()))
    if kind not in DISTRIBUTIONS:
        return [f"  {path}: unknown distribution {kind!r}; {usage}"]
    if kind == "choice":
        if not isinstance(spec, list) or not spec:
            return [f"  {path}.choice: needs a non-empty list of values"]
        return []
    numbers = int if kind == "int" else int | float
    if (
        not isinstance(spec, list)
        or len(spec) != 2
        or not all(isinstance(v, numbers) and not isinstance(v, bool) for v in spec)
    ):
        kind_of = "integers" if kind == "int" else "numbers"
        return [f"  {path}.{kind}: needs [low, high], two {kind_of}"]
    low, high = spec
    if low > high:
        return [f"  {path}.{kind}: low {low} is above high {high}; write [low, high]"]
    if kind == "loguniform" and low <= 0:
        return [f"  {path}.loguniform: low must be > 0 (got {low}); use uniform for 0"]
    return []


def family_settings(family_sweep: dict) -> list[dict]:
    """The grid's combinations, the explicit and the sampled settings, each once, by name.

    Two samples that round to the same setting are one setting (a smaller study, not an error).
    """
    settings = list(family_sweep.get("settings") or [])
    if family_sweep.get("random"):
        settings += sampled_settings(family_sweep["random"])
    grid = family_sweep.get("grid")
    if grid:  # (the product of no lists would be one empty setting)
        keys = sorted(grid)
        combinations = itertools.product(*(grid[key] for key in keys))
        settings += [dict(zip(keys, values, strict=True)) for values in combinations]
    unique = {}
    for overrides in settings:
        overrides = {key: overrides[key] for key in sorted(overrides)}
        name = setting_name(overrides)
        if unique.setdefault(name, overrides) != overrides:
            raise ValueError(f"settings {unique[name]} and {overrides} would share the name {name}")
    return [unique[name] for name in sorted(unique)]


def canonical_sweep(sweep: dict) -> dict:
    """The study in one fixed order: keys, grid values, seeds and settings sorted, no duplicates.

    Snakemake compares params by their repr, so the workflow keeps this form in its config:
    reordering the study in the config file then reruns nothing.
    """
    result = {}
    for key in sorted(sweep):
        value = sweep[key]
        if key == "seeds":
            value = sorted(set(value))
        elif key == "families":
            value = {family: _canonical_family(value[family]) for family in sorted(value)}
        result[key] = value
    return result


def _canonical_family(family_sweep: dict) -> dict:
    result = {}
    if "grid" in family_sweep:
        grid = family_sweep["grid"]
        result["grid"] = {
            key: sorted({json.dumps(v): v for v in grid[key]}.values(), key=value_order)
            for key in sorted(grid)
        }
    if "settings" in family_sweep:
        unique = {setting_name(s): {k: s[k] for k in sorted(s)} for s in family_sweep["settings"]}
        result["settings"] = [unique[name] for name in sorted(unique)]
    for key in sorted(set(family_sweep) - {"grid", "settings"}):
        result[key] = family_sweep[key]  # random, halving: order-free already (dicts)
    return result


def seeds(config: dict) -> list[int]:
    """The seeds every setting is trained with: ``sweep.seeds``, else the config's ``seed``."""
    return sorted(set(config.get("sweep", {}).get("seeds") or [config["seed"]]))


def swept_families(config: dict) -> list[str]:
    """Families with a study, in the order of ``models``."""
    families = config.get("sweep", {}).get("families") or {}
    return [family for family in config["models"] if family in families]


def study(config: dict) -> list[SweepRun]:
    """Every run of the study, by family (in ``models`` order), then setting and seed."""
    runs = []
    for family in swept_families(config):
        base = config["hyperparameters"].get(family, {})
        rungs = halving.rungs(config["sweep"]["families"][family])
        if rungs:  # every setting's schedule runs over the maximal budget, the last rung
            base = {**base, "epochs": rungs[-1]}
        for overrides in family_settings(config["sweep"]["families"][family]):
            setting = setting_name(overrides)
            for seed in seeds(config):
                hyperparameters = {**base, **overrides, "seed": seed}
                runs.append(
                    SweepRun(
                        family=family,
                        name=run_name(setting, seed),
                        setting=setting,
                        overrides=overrides,
                        seed=seed,
                        hyperparameters={k: hyperparameters[k] for k in sorted(hyperparameters)},
                    )
                )
    return runs


def config_errors(config: dict, schema: dict) -> list[str]:
    """What the schema cannot say about a study: values checked like the family's own keys.

    Expects a config that passed the schema. One line per problem, like settings.config_errors.
    """
    sweep = config.get("sweep") or {}
    families = sweep.get("families") or {}
    lines = []
    for family, family_sweep in families.items():
        where = f"sweep.families.{family}"
        if family not in config.get("models", []):
            lines.append(
                f"  {where}: {family} is not in models {config.get('models')}; "
                "add it there to run its study"
            )
        properties = schema["properties"]["hyperparameters"]["properties"][family]["properties"]
        allowed = sorted(key for key in properties if key != "seed")
        entries = [
            (f"{where}.grid.{key}.{i}", key, value)
            for key, values in (family_sweep.get("grid") or {}).items()
            for i, value in enumerate(values)
        ] + [
            (f"{where}.settings.{i}.{key}", key, value)
            for i, setting in enumerate(family_sweep.get("settings") or [])
            for key, value in setting.items()
        ]
        random_search = family_sweep.get("random") or {}
        for key, distribution in (random_search.get("distributions") or {}).items():
            path = f"{where}.random.distributions.{key}"
            if key == "seed":
                lines.append(f"  {path}: seeds are set by sweep.seeds, not sampled")
            elif key not in properties:
                lines.append(
                    f"  {path}: unknown hyperparameter (allowed keys: {', '.join(allowed)})"
                )
            else:
                problems = distribution_errors(path, distribution)
                lines += problems
                if not problems:  # the values it can draw must suit the hyperparameter
                    (kind, spec) = next(iter(distribution.items()))
                    values = [_round(v) for v in spec] if "uniform" in kind else spec
                    entries += [(f"{path}.{kind}", key, value) for value in values]
        for path, key, value in entries:
            if key == "seed":
                lines.append(f"  {path}: seeds are set by sweep.seeds, not per setting")
            elif key not in properties:
                lines.append(
                    f"  {path}: unknown hyperparameter (allowed keys: {', '.join(allowed)})"
                )
            else:
                error = jsonschema.exceptions.best_match(
                    jsonschema.Draft202012Validator(properties[key]).iter_errors(value)
                )
                if error is not None:
                    lines.append(f"  {path}: {error.message}")
        if not any(family_sweep.get(key) for key in ("grid", "settings", "random")):
            lines.append(
                f"  {where}: needs a grid, settings or random (settings: [{{}}] is the base run)"
            )
        lines += halving.config_errors(where, family_sweep)
        if lines:
            continue  # sampling would trip over the problems already named
        try:
            family_settings(family_sweep)
        except ValueError as error:
            lines.append(f"  {where}: {error}")
    return lines


ARRAY_ISSUE = "snakemake-executor-plugin-slurm issue 473"


WRAP_UNSAFE = re.compile(r"[$`\"\\]")


def array_job_errors(
    array_rules: set[str],
    grouped: bool,
    jobs: int | None,
    runs: int,
    config_args=(),
    study_rules=("train_study", "train_rung"),
) -> list[str]:
    """What keeps a study's trainings from going out as SLURM job arrays, with the fix.

    ``array_rules``: --slurm-array-jobs (rule names or "all"); ``jobs``: --jobs; ``runs``: the
    study's runs. The pinned plugin (2.8.0) drops, without submitting, a rule's ready jobs when
    fewer arrive than are ready and fewer than --slurm-array-limit (ARRAY_ISSUE): their
    --jobs slots are never given back and the run hangs. With --jobs at least the study's
    runs, every wave holds all of a rule's ready jobs. An array's job command goes through
    sbatch --wrap="..." (profiles/slurm: the plugin's script mode breaks arrays), where a
    ``--config`` value (``config_args``) with $, `, " or a backslash is expanded or cut.
    ``study_rules``: the rules of the study's jobs (workflow/rules/sweep.smk, STUDY_RULES).
    """
    training_rules = {"train_study", "train_rung", "train", "evaluate"}
    wanted = "all" in array_rules or bool(training_rules & array_rules)
    if not wanted or runs == 0:
        return []
    lines = []
    if "all" not in array_rules and not set(study_rules) & array_rules:
        lines.append(
            f"  --slurm-array-jobs {','.join(sorted(array_rules))}: the study's runs are jobs "
            f"of {', '.join(study_rules)} (train and evaluate run the runs outside the "
            "study); name those"
        )
    if grouped:
        lines.append(
            "  sweep.group: job arrays take ungrouped jobs only (the plugin submits group jobs "
            "one by one); set sweep.group: false"
        )
    for arg in config_args or ():
        if WRAP_UNSAFE.search(arg):
            lines.append(
                f'  --config {arg}: an array\'s job command is sbatch --wrap="...", where '
                '$, `, " and \\ do not survive; put the value in a --configfile'
            )
    if jobs is not None and jobs < runs:
        lines.append(
            f"  --jobs {jobs}: below the study's {runs} runs, the SLURM plugin in array mode "
            f"drops jobs and hangs ({ARRAY_ISSUE}); pass --jobs {runs} or more (SLURM's "
            "MaxArraySize and --slurm-array-limit still bound each array)"
        )
    return lines
