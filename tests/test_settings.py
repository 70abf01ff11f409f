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
    cnn = config["hyperparameters"]["cnn"]
    # the statistics span the averaged weights' steps
    assert cnn["ema_momentum"] == cnn["batch_norm_momentum"] == 0.98
    assert cnn["filters"] == [16, 32, 64]
    assert "batch_norm_momentum" not in config["hyperparameters"]["mlp"]  # no batch norms
    assert config["hyperparameters"]["cnn"]["warmup_epochs"] == 0.3  # of the first epoch
    assert "warmup_epochs" not in config["hyperparameters"]["mlp"]  # 10% of all steps
    assert config["hyperparameters"]["cnn"]["label_smoothing"] == 0.05
    assert config["hyperparameters"]["cnn"]["beta_2"] == 0.99
    assert not {"label_smoothing", "beta_2"} & set(config["hyperparameters"]["mlp"])
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


def test_command_line_strings_are_parsed_behind_schema_references():
    # snakemake --config 'resources={"train": {"gpu": 1}}': resources.train is a $ref
    config = check({**load_default(), "resources": {"train": {"gpu": "1", "threads": "4"}}})
    assert config["resources"]["train"]["gpu"] == 1
    assert config["resources"]["train"]["threads"] == 4


# Values a job's shell must read back literally; those with ', \ or a control character
# cannot pass Snakemake's repr() quoting and are refused for cluster runs.
SHELL_SPECIAL = {
    "double quote": ('download={mirrors: [/data/a"b]}', True),
    "backticks and $()": ('download={"mirrors": ["/data/`touch p`$(touch p)"]}', True),
    "single quote": ('download={"mirrors": ["/data/it\'s$(touch p)"]}', False),
    "backslash": ('download={"mirrors": ["C:\\\\data"]}', False),
    "newline": ('download={"mirrors": ["/data/a\nb"]}', False),
    "plain": ("dataset=mnist-sample", True),
    "already quoted": ('"dataset=mnist-sample"', False),
}


@pytest.mark.parametrize("name", SHELL_SPECIAL)
def test_a_config_argument_is_safe_exactly_when_the_jobs_shell_reads_it_back(tmp_path, name):
    import subprocess

    from snakemake_interface_executor_plugins.utils import format_cli_arg

    arg, safe = SHELL_SPECIAL[name]
    assert (settings.unsafe_cli_config([arg]) == []) is safe
    # What Snakemake writes into a job script, run by bash as the job would.
    line = format_cli_arg("--config", [arg])
    result = subprocess.run(
        ["bash", "-c", f'printf "%s\\0" {line}'], cwd=tmp_path, capture_output=True, text=True
    )
    literal = result.returncode == 0 and result.stdout == f"--config\0{arg}\0"
    if safe:
        assert literal and not list(tmp_path.iterdir())
    else:
        assert not literal


def test_an_unsafe_config_argument_stops_with_the_configfile_way():
    arg = SHELL_SPECIAL["single quote"][0]
    with pytest.raises(settings.ConfigError) as error:
        settings.check_cli_config_for_cluster_jobs(["dataset=mnist-sample", arg])
    message = str(error.value)
    assert arg in message and "dataset=mnist-sample" not in message
    assert "--configfile my.yaml" in message and "Nothing was submitted" in message
    assert "- /data/it's$(touch p)" in message  # the value as YAML for the file
    settings.check_cli_config_for_cluster_jobs(["dataset=mnist-sample"])  # safe: no error


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
