from pathlib import Path

import pytest
import yaml

from conftest import REPO
from mnistflow import settings

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"


def validate_with_defaults(config, schema, set_default=True):
    from snakemake.utils import validate

    validate(config, str(schema), set_default=set_default)


def load_default():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def check(config):
    settings.validate_config(config, SCHEMA_PATH, validate_with_defaults)
    return config


def test_shipped_config_is_valid_and_defines_one_default_run_per_family():
    config = check(load_default())
    runs = settings.runs(config)
    assert list(runs) == ["softmax", "mlp", "cnn"]
    assert runs["softmax"]["default"]["epochs"] == 20
    assert runs["softmax"]["default"]["optimizer"] == "rmsprop"
    assert runs["softmax"]["default"]["seed"] == 0


def test_defaults_fill_missing_keys():
    config = check({"models": ["mlp"]})
    assert config["dataset"] == "mnist"
    assert config["hyperparameters"]["mlp"]["hidden_units"] == 128
    assert config["hyperparameters"]["softmax"]["epochs"] == 20  # the seed's, not the generic
    assert config["hyperparameters"]["softmax"]["ema_momentum"] == 0  # the seed's: no averaging
    assert config["hyperparameters"]["cnn"]["ema_momentum"] == 0.99
    assert config["resources"]["train"]["gpu"] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"models": ["softmax", "resnet"]},
            "models.1: 'resnet' is not one of ['softmax', 'mlp', 'cnn'] "
            "(allowed values: softmax, mlp, cnn)",
        ),
        (
            {"hyperparameters": {"cnn": {"epochs": -2}}},
            "hyperparameters.cnn.epochs: -2 is less than the minimum of 1",
        ),
        (
            {"hyperparameters": {"mlp": {"hiden_units": 64}}},
            "hyperparameters.mlp: Additional properties are not allowed ('hiden_units' was "
            "unexpected) (allowed keys: epochs,",
        ),
        (
            {"hyperparameters": {"cnn": {"ema_momentum": 1}}},
            "hyperparameters.cnn.ema_momentum: 1 is greater than or equal to the maximum of 1",
        ),
        ({"dataset": "cifar10"}, "dataset: 'cifar10' is not one of"),
        (
            {"download": {"mirrors": "/not/a/list"}},
            "download.mirrors: '/not/a/list' is not of type",
        ),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(change, message):
    config = {**load_default(), **change}
    with pytest.raises(settings.ConfigError) as error:
        check(config)
    assert message in str(error.value)
    assert "workflow/schemas/config.schema.yaml" in str(error.value)


def test_command_line_strings_are_parsed_where_numbers_are_expected():
    # snakemake --config 'hyperparameters={cnn: {epochs: 3}}' gives the string "3"
    config = check({**load_default(), "hyperparameters": {"cnn": {"epochs": "3"}}})
    assert config["hyperparameters"]["cnn"]["epochs"] == 3


def test_reordering_hyperparameter_keys_gives_the_same_run():
    first = check(load_default())
    reordered = load_default()
    reordered["hyperparameters"]["cnn"] = dict(
        reversed(reordered["hyperparameters"]["cnn"].items())
    )
    second = check(reordered)
    assert list(settings.runs(first)["cnn"]["default"]) == list(
        settings.runs(second)["cnn"]["default"]
    )


def test_schema_file_is_valid_yaml():
    assert yaml.safe_load(Path(SCHEMA_PATH).read_text())["type"] == "object"
