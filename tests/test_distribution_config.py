"""mnistflow.distribution_config: which distribution settings fit together, and the train job's
resources, with the schema's defaults for what a setting leaves out."""

from __future__ import annotations

import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO
from mnistflow import distribution_config, settings
from mnistflow.distribution_config import DistributionConfigError, job_resources

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
# The schema's defaults: the only place they are written.
DEFAULTS = {
    key: spec["default"]
    for key, spec in yaml.safe_load(SCHEMA.read_text())["properties"]["distribution"][
        "properties"
    ].items()
}


def full(**distribution) -> dict:
    """A setting as the validated configuration holds it."""
    return {**DEFAULTS, **distribution}


def validated(config: dict) -> dict:
    settings.validate_config(config, SCHEMA, lambda c, s, set_default: validate(c, s, set_default))
    return config


def test_the_schema_default_is_one_process_on_one_device():
    assert DEFAULTS == {"mode": "none", "processes": 1, "nodes": 1, "devices": 1}
    assert validated({})["distribution"] == DEFAULTS


# --- resources of the train rule ---------------------------------------------------------


def test_mode_none_adds_nothing():
    assert job_resources(full(), 0) == {}
    assert job_resources({"mode": "none", "processes": 1, "nodes": 1, "devices": 1}, 1) == {}


def test_devices_mode_asks_for_the_devices_as_gpus_only_when_gpus_are_asked_for():
    assert job_resources(full(mode="devices", devices=4), 0) == {}
    assert job_resources(full(mode="devices", devices=4), 1) == {"gpu": 4}


def test_processes_mode_asks_for_nodes_tasks_and_gpus_per_node():
    assert job_resources(full(mode="processes", processes=2), 0) == {
        "nodes": 1,
        "tasks": 2,
        "mpi": "mnistflow.launch",
    }
    assert job_resources({"mode": "processes", "processes": 8, "nodes": 2, "devices": 1}, 1) == {
        "gpu": 4,
        "nodes": 2,
        "tasks": 8,
        "mpi": "mnistflow.launch",
        "tasks_per_gpu": 0,
    }
    assert job_resources(full(mode="processes", processes=1), 0) == {"nodes": 1, "tasks": 1}


@pytest.mark.parametrize(
    "distribution, match",
    [
        (full(mode="processes", processes=3, nodes=2), "multiple of nodes"),
        (full(mode="devices", processes=2), "mode devices is one process on one node"),
        (full(mode="mesh"), "not one of none, devices, processes"),
        (full(mode="processes", processes=0), "at least 1"),
        (full(mode="none", processes=2), "distribution.processes: 2 needs distribution.mode"),
        (full(mode="processes", nodes=2), "leaves nodes idle"),
    ],
)
def test_impossible_distributions_are_refused(distribution, match):
    with pytest.raises(DistributionConfigError, match=match):
        job_resources(distribution, 0)


def test_a_setting_without_the_schemas_defaults_is_refused_by_name():
    with pytest.raises(DistributionConfigError, match="lacks processes, nodes, devices: pass"):
        job_resources({"mode": "processes"}, 0)


# --- the same checks when the configuration is read --------------------------------------


def test_the_configuration_is_refused_with_the_same_checks_and_the_schemas_defaults():
    """Processes that do not divide over the nodes stop the run when the configuration is
    read, before any rule asks for resources; a key left out takes the schema's default."""
    config = {"compute": {"backend": "jax"}, "distribution": {"mode": "processes", "processes": 3}}
    config["distribution"]["nodes"] = 2
    with pytest.raises(settings.ConfigError) as error:
        validated(config)
    assert "  distribution.processes: 3 processes do not divide evenly over 2 nodes" in str(
        error.value
    )
    assert distribution_config.errors(full(mode="devices", devices=2), "tensorflow") == [
        "distribution.mode: 'devices' needs compute.backend: jax (it is 'tensorflow'); set "
        "compute.backend: jax (pip install jax), or distribution.mode: none (TensorFlow's "
        "multi-worker training is broken with Keras 3: keras-team/keras#20585)"
    ]
    assert validated({"compute": {"backend": "jax"}, "distribution": {"mode": "devices"}})[
        "distribution"
    ] == full(mode="devices")
