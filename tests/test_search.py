"""Random search: settings sampled from distributions, reproducible by the sampling seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from mnistflow import settings, sweeps

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def config_with(family_sweep: dict, family="softmax") -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(models=[family], sweep={"families": {family: family_sweep}})
    settings.validate_config(config, SCHEMA, validate)
    return config


SEARCH = {
    "random": {
        "samples": 6,
        "seed": 3,
        "distributions": {
            "learning_rate": {"loguniform": [0.001, 0.3]},
            "batch_size": {"choice": [32, 64, 128]},
        },
    }
}


def test_same_sampling_seed_gives_the_same_settings_and_names():
    first = sweeps.study(config_with(SEARCH))
    again = sweeps.study(config_with(SEARCH))
    assert [r.hyperparameters for r in first] == [r.hyperparameters for r in again]
    assert len({r.name for r in first}) == 6
    for run in first:
        assert 0.001 <= run.overrides["learning_rate"] <= 0.3
        assert run.overrides["batch_size"] in (32, 64, 128)
        # readable: 4 significant digits, e.g. batch_size=64+learning_rate=0.01234+seed=0
        assert run.name.startswith("batch_size="), run.name
        assert len(run.name) < 60, run.name
    other = {**SEARCH, "random": {**SEARCH["random"], "seed": 4}}
    assert {r.name for r in sweeps.study(config_with(other))} != {r.name for r in first}


def test_int_and_uniform_draw_within_bounds():
    search = {
        "random": {
            "samples": 20,
            "distributions": {
                "epochs": {"int": [1, 3]},
                "learning_rate": {"uniform": [0.01, 0.02]},
            },
        }
    }
    runs = sweeps.study(config_with(search))
    assert {r.overrides["epochs"] for r in runs} <= {1, 2, 3}
    assert all(isinstance(r.overrides["epochs"], int) for r in runs)
    assert all(0.01 <= r.overrides["learning_rate"] <= 0.02 for r in runs)


@pytest.mark.parametrize(
    ("distribution", "message"),
    [
        ({"gaussian": [0, 1]}, "unknown distribution 'gaussian'"),
        ({"loguniform": [0, 1]}, "loguniform: low must be > 0"),
        ({"uniform": [1, 0.1]}, "low 1 is above high 0.1"),
        ({"uniform": [1]}, "uniform: needs [low, high]"),
        ({"choice": []}, "choice: needs a non-empty list"),
        ({"uniform": [0.1, 1], "int": [1, 2]}, "a distribution is one of"),
    ],
)
def test_a_bad_distribution_is_refused_by_name(distribution, message):
    search = {"random": {"samples": 2, "distributions": {"learning_rate": distribution}}}
    with pytest.raises(
        Exception, match="sweep.families.softmax.random.distributions.learning_rate"
    ) as info:
        config_with(search)
    assert message in str(info.value)


def test_drawn_values_are_checked_against_the_hyperparameter():
    search = {"random": {"samples": 2, "distributions": {"batch_size": {"choice": [0, 64]}}}}
    with pytest.raises(Exception, match=r"distributions.batch_size.choice"):
        config_with(search)
    search = {"random": {"samples": 2, "distributions": {"bogus": {"choice": [1]}}}}
    with pytest.raises(Exception, match="unknown hyperparameter"):
        config_with(search)
