"""The workflow's configuration: validation with clear messages, and the runs it defines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jsonschema
import yaml

from mnistflow import sweeps

DEFAULT_RUN = "default"


class ConfigError(ValueError):
    """A configuration value the workflow cannot use; the message names key and allowed values."""


def _allowed(schema: dict) -> str:
    if "enum" in schema:
        return "allowed values: " + ", ".join(map(str, schema["enum"]))
    if "properties" in schema:
        return "allowed keys: " + ", ".join(schema["properties"])
    return ""


def config_errors(config: dict, schema: dict) -> list[str]:
    """One line per problem: the dotted key, what is wrong, and what is allowed."""
    validator = jsonschema.Draft202012Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        key = ".".join(map(str, error.absolute_path)) or "(top level)"
        explain = error.validator in ("enum", "additionalProperties")
        allowed = _allowed(error.schema) if explain else ""
        lines.append(f"  {key}: {error.message}" + (f" ({allowed})" if allowed else ""))
    return lines


def _coerce_cli_strings(value, schema: dict):
    """Parse strings where the schema wants numbers, booleans or lists.

    Snakemake reads nested ``--config`` values (``hyperparameters={cnn: {epochs: 3}}``) with
    YAML's base loader, which keeps every scalar a string.
    """
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {k: _coerce_cli_strings(v, properties.get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce_cli_strings(v, schema.get("items", {})) for v in value]
    wanted = schema.get("type", [])
    wanted = {wanted} if isinstance(wanted, str) else set(wanted)
    if isinstance(value, str) and wanted & {"integer", "number", "boolean", "array", "null"}:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def validate_config(config: dict, schema_path: str | Path, validate: Callable) -> None:
    """Check ``config`` against the schema, then let Snakemake's ``validate`` fill defaults."""
    # libyaml's loader where PyYAML has it: this runs at every Snakemake start, even a no-op.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schema = yaml.load(Path(schema_path).read_text(), Loader=loader)
    config.update(_coerce_cli_strings(config, schema))
    # The study's values are checked against the families' keys once its structure is valid.
    errors = config_errors(config, schema) or sweeps.config_errors(config, schema)
    if errors:
        raise ConfigError(
            "invalid configuration (config/config.yaml or --config):\n"
            + "\n".join(errors)
            + "\nFix these keys; the schema with every key and its default is "
            "workflow/schemas/config.schema.yaml."
        )
    validate(config, str(schema_path), set_default=True)


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
