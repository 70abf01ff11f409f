"""The workflow's configuration: validation with clear messages, and the runs it defines."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import jsonschema
import yaml

from mnistflow import distribution_config, sweeps

DEFAULT_RUN = "default"


class ConfigError(ValueError):
    """A configuration value the workflow cannot use; the message names key and allowed values."""


def _allowed(schema: dict) -> str:
    if "enum" in schema:
        return "allowed values: " + ", ".join(map(str, schema["enum"]))
    if "properties" in schema:
        return "allowed keys: " + ", ".join(schema["properties"])
    return ""


def _is_integer(checker, value) -> bool:
    # JSON Schema counts 2.0 as an integer; Python code (range(), NumPy seeds) does not.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(checker, value) -> bool:
    # JSON Schema's bounds let NaN through (every comparison with it is false), and inf too.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Draft 2020-12 with integers that are ints and numbers that are finite.
Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}
    ),
)
TYPE_HINTS = {
    "integer": "a whole number written without a decimal point, e.g. 2 rather than 2.0",
    "number": "a finite number: not .nan or .inf",
}


def _type_hint(schema: dict) -> str:
    wanted = schema.get("type", [])
    wanted = [wanted] if isinstance(wanted, str) else wanted
    return "; ".join(TYPE_HINTS[t] for t in wanted if t in TYPE_HINTS)


def non_finite_numbers(value, key: str = "") -> list[tuple[str, float]]:
    """(dotted key, value) of every NaN or infinite number, wherever it is (a study's grid too)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(key or "(top level)", value)]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return []
    return [bad for k, v in items for bad in non_finite_numbers(v, f"{key}.{k}" if key else str(k))]


def config_errors(config: dict, schema: dict) -> list[str]:
    """One line per problem: the dotted key, what is wrong, and what is allowed."""
    validator = Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        key = ".".join(map(str, error.absolute_path)) or "(top level)"
        explain = error.validator in ("enum", "additionalProperties")
        allowed = _allowed(error.schema) if explain else ""
        if error.validator == "type":
            allowed = _type_hint(error.schema)
        lines.append(f"  {key}: {error.message}" + (f" ({allowed})" if allowed else ""))
    reported = {line.split(":")[0].strip() for line in lines}
    lines += [
        f"  {key}: {value} is not a finite number ({TYPE_HINTS['number']})"
        for key, value in non_finite_numbers(config)
        if key not in reported
    ]
    return lines


def _coerce_cli_strings(value, schema: dict, root: dict | None = None):
    """Parse strings where the schema wants numbers, booleans or lists.

    Snakemake reads nested ``--config`` values (``hyperparameters={cnn: {epochs: 3}}``) with
    YAML's base loader, which keeps every scalar a string. ``$ref``s (``resources.train``)
    are followed within the schema.
    """
    root = schema if root is None else root
    if "$ref" in schema:
        schema = _resolve(schema["$ref"], root)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {k: _coerce_cli_strings(v, properties.get(k, {}), root) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce_cli_strings(v, schema.get("items", {}), root) for v in value]
    wanted = schema.get("type", [])
    wanted = {wanted} if isinstance(wanted, str) else set(wanted)
    if isinstance(value, str) and wanted & {"integer", "number", "boolean", "array", "null"}:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def _resolve(ref: str, root: dict) -> dict:
    """The subschema a local ``$ref`` ("#/$defs/resources") points to."""
    node = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def unsafe_cli_config(config_args) -> list[str]:
    """The ``--config`` arguments a cluster job's shell would not read back literally.

    Snakemake 9.27 copies every ``--config`` argument into each job's command line as
    Snakemake's format_cli_value() quotes it: Python's repr(), or nothing when the argument
    already looks quoted (snakemake issue 3297; snakemake-executor-plugin-slurm issue 29 for
    the same family of bugs). That is shell quoting only when the result is the argument
    unchanged between single quotes: with a ', a backslash or a control character the job
    gets a different value, or runs part of it ($(...), backticks) as a command.
    """
    from snakemake_interface_executor_plugins.utils import format_cli_value

    return [arg for arg in config_args or () if format_cli_value(arg, quote=True) != f"'{arg}'"]


def check_cli_config_for_cluster_jobs(config_args) -> None:
    """Stop before the first submission when a ``--config`` value cannot reach the jobs."""
    unsafe = unsafe_cli_config(config_args)
    if not unsafe:
        return
    lines = [
        "a --config value cannot be passed safely to cluster jobs:",
        *(f"  {arg}" for arg in unsafe),
        "Snakemake 9 copies --config values into every job's command line, quoted so that a",
        "value containing ' or \\ or a control character reaches the job changed, or runs as",
        "a command (snakemake issue 3297). Nothing was submitted. Put such values in a YAML",
        "file and pass it with --configfile instead, e.g. my.yaml:",
    ]
    for arg in unsafe:
        key, _, value = arg.partition("=")
        try:
            entry = {key: yaml.load(value, Loader=yaml.BaseLoader)}
        except yaml.YAMLError:
            continue
        dumped = yaml.safe_dump(entry, default_flow_style=False, allow_unicode=True)
        lines += ["    " + line for line in dumped.splitlines()]
    lines.append("  then: snakemake --profile profiles/<scheduler> --configfile my.yaml")
    raise ConfigError("\n".join(lines))


# The workflow's outputs (results, logs, benchmarks, data) and Snakemake's records, relative
# to the working directory: the checkpoint folder's clean-up must never reach into them.
OUTPUT_DIRS = ("results", "logs", "benchmarks", "resources", ".snakemake")


def checkpoint_errors(config: dict, workdir: str | Path | None = None) -> list[str]:
    """checkpoint.directory may neither be nor hold nor lie in an output folder."""
    directory = (config.get("checkpoint") or {}).get("directory", ".checkpoints")
    workdir = Path(workdir or Path.cwd()).resolve()
    chosen = (workdir / directory).resolve()
    for name in OUTPUT_DIRS:
        protected = workdir / name
        if chosen == protected or protected in chosen.parents or chosen in protected.parents:
            return [
                f"  checkpoint.directory: {directory!r} overlaps {name}/ (in {workdir}), "
                "where the workflow's outputs are: clearing a finished run's checkpoints must "
                "not touch them. Use a folder of its own, e.g. .checkpoints (the default) or "
                "/scratch/$USER/mnist-checkpoints"
            ]
    return []


def validate_config(config: dict, schema_path: str | Path, validate: Callable) -> None:
    """Check ``config`` against the schema, then let Snakemake's ``validate`` fill defaults."""
    # libyaml's loader where PyYAML has it: this runs at every Snakemake start, even a no-op.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schema = yaml.load(Path(schema_path).read_text(), Loader=loader)
    config.update(_coerce_cli_strings(config, schema))
    # The study's values are checked against the families' keys once its structure is valid.
    _raise_if(config_errors(config, schema) or sweeps.config_errors(config, schema))
    validate(config, str(schema_path), set_default=True)
    # What does not fit together, read with the schema's defaults filled in.
    _raise_if(distribution_errors(config) + checkpoint_errors(config))


def distribution_errors(config: dict) -> list[str]:
    """The ``distribution`` settings that do not fit together or with ``compute.backend``
    (mnistflow.distribution_config), in a configuration with the schema's defaults."""
    found = distribution_config.errors(config["distribution"], config["compute"]["backend"])
    return [f"  {line}" for line in found]


def _raise_if(errors: list[str]) -> None:
    if errors:
        raise ConfigError(
            "invalid configuration (config/config.yaml or --config):\n"
            + "\n".join(errors)
            + "\nFix these keys; the schema with every key and its default is "
            "workflow/schemas/config.schema.yaml."
        )


def canonical(hp: dict) -> dict:
    """Sorted keys, so reordering keys in the configuration changes nothing downstream."""
    return {key: hp[key] for key in sorted(hp)}


def canonical_config(value):
    """``value`` with the keys of every mapping sorted: the config's order is not meaningful.

    For params: Snakemake compares them by repr, and the order of the config's keys depends
    on the order of its files and overrides.
    """
    if isinstance(value, dict):
        return {key: canonical_config(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical_config(item) for item in value]
    return value


class _DuplicateKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML that refuses a key given twice in one mapping (PyYAML keeps the last, silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str | int | float | bool | None):
                continue  # unhashable: the schema refuses such keys anyway
            if key in seen:
                raise ConfigError(
                    f"{key_node.start_mark.name}, line {line}: the key {key!r} is given twice "
                    f"(first on line {seen[key]}); YAML would silently keep only the last. "
                    "Remove one of them."
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def check_config_files(paths) -> None:
    """Every configuration file read (config/config.yaml, --configfile): no key twice."""
    for path in paths:
        with open(path) as handle:
            yaml.load(handle, Loader=_DuplicateKeyLoader)


def run_hyperparameters(runs: dict, family: str, run: str) -> dict:
    """A configured run's hyperparameters; a clear error for a run the config does not have
    (asked for by a target such as results/mnist/softmax/foo/metrics.json)."""
    try:
        return runs[family][run]
    except KeyError:
        known = ", ".join(f"{f}/{r}" for f, names in runs.items() for r in names) or "none"
        raise ConfigError(
            f"no run {family}/{run} in the configuration (its runs: {known}). Ask for one of "
            f"those, or configure it: models: [...] for a family's {DEFAULT_RUN!r} run, sweep: "
            "for a parameter study's runs (docs/sweeps.md)."
        ) from None


def runs(config: dict) -> dict[str, dict[str, dict]]:
    """Every run to train, as {family: {run name: hyperparameters}}.

    The configuration's own hyperparameters are the run named "default"; a run's name is a
    directory level of its own, so parameter studies add runs beside it. A family with a
    ``sweep`` trains its study's runs instead (see mnistflow.sweeps).
    """
    studied = {}
    for run in sweeps.study(config):
        studied.setdefault(run.family, {})[run.name] = run.hyperparameters
    return {
        family: studied.get(family)
        or {DEFAULT_RUN: canonical({"seed": config["seed"], **config["hyperparameters"][family]})}
        for family in config["models"]
    }
