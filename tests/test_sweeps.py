"""Parameter studies: expanding the config's sweep into named runs, and aggregating them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from mnistflow import aggregate, report, settings, sweeps

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def config_with(sweep: dict, models=("softmax", "mlp")) -> dict:
    """The repository's config with ``sweep``, validated (defaults filled) like the workflow."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(models=list(models), sweep=sweep)
    settings.validate_config(config, SCHEMA, validate)
    return config


GRID_2X2 = {
    "seeds": [0, 1],
    "families": {
        "softmax": {"grid": {"learning_rate": [0.01, 0.1], "batch_size": [64, 128]}},
    },
}


def test_grid_times_seeds_gives_one_run_per_combination_named_after_it():
    runs = sweeps.study(config_with(GRID_2X2))
    assert len(runs) == 8
    assert [run.name for run in runs if run.seed == 0] == [
        "batch_size=128+learning_rate=0.01+seed=0",
        "batch_size=128+learning_rate=0.1+seed=0",
        "batch_size=64+learning_rate=0.01+seed=0",
        "batch_size=64+learning_rate=0.1+seed=0",
    ]
    run = runs[0]
    assert run.setting == "batch_size=128+learning_rate=0.01"
    assert run.overrides == {"batch_size": 128, "learning_rate": 0.01}
    # The rest of the hyperparameters come from the family's own, keys sorted.
    assert run.hyperparameters == {
        "batch_size": 128,
        "ema_momentum": 0,
        "epochs": 20,
        "learning_rate": 0.01,
        "optimizer": "rmsprop",
        "schedule": "constant",
        "seed": 0,
    }
    assert list(run.hyperparameters) == sorted(run.hyperparameters)


def test_reordering_keys_values_and_seeds_changes_nothing():
    reordered = {
        "families": {
            "softmax": {"grid": {"batch_size": [128, 64], "learning_rate": [0.1, 0.01, 0.1]}}
        },
        "seeds": [1, 0],
    }
    assert sweeps.study(config_with(reordered)) == sweeps.study(config_with(GRID_2X2))
    # Snakemake compares params by repr, where (unlike ==) the order of dict keys counts.
    assert repr(sweeps.canonical_sweep(config_with(reordered)["sweep"])) == repr(
        sweeps.canonical_sweep(config_with(GRID_2X2)["sweep"])
    )


def test_adding_a_grid_value_only_adds_runs():
    before = {run.name for run in sweeps.study(config_with(GRID_2X2))}
    bigger = json.loads(json.dumps(GRID_2X2))
    bigger["families"]["softmax"]["grid"]["learning_rate"].append(0.3)
    after = {run.name for run in sweeps.study(config_with(bigger))}
    assert before < after and len(after - before) == 4
    assert all("learning_rate=0.3+" in name for name in after - before)


def test_settings_join_the_grid_and_empty_setting_is_the_base():
    sweep = {
        "families": {
            "mlp": {
                "grid": {"hidden_units": [64, 128]},
                "settings": [{}, {"dropout": 0.2, "optimizer": "sgd"}, {"hidden_units": 64}],
            }
        }
    }
    runs = sweeps.study(config_with(sweep))
    # One seed (the config's), and {hidden_units: 64} from both grid and settings counts once.
    assert [run.name for run in runs] == [
        "base+seed=0",
        "dropout=0.2+optimizer=sgd+seed=0",
        "hidden_units=128+seed=0",
        "hidden_units=64+seed=0",
    ]
    base = runs[0].hyperparameters
    assert base == settings.canonical({**config_with(sweep)["hyperparameters"]["mlp"], "seed": 0})


def test_swept_family_trains_its_study_instead_of_its_default_run():
    runs = settings.runs(config_with(GRID_2X2))
    assert "default" not in runs["softmax"] and len(runs["softmax"]) == 8
    assert list(runs["mlp"]) == ["default"]  # not swept: unchanged
    assert runs["softmax"]["batch_size=64+learning_rate=0.1+seed=1"]["seed"] == 1


def test_without_a_sweep_nothing_changes():
    config = config_with({})
    assert config["sweep"] == {"seeds": [], "threads": 1, "group": True, "families": {}}
    assert sweeps.study(config) == []
    assert {family: list(runs) for family, runs in settings.runs(config).items()} == {
        "softmax": ["default"],
        "mlp": ["default"],
    }


def test_names_stay_short_and_safe_for_any_value():
    assert sweeps.setting_name({"filters": [16, 32, 64]}) == "filters=16-32-64"
    assert sweeps.setting_name({"learning_rate": 1e-05}) == "learning_rate=1e-05"
    long_setting = {f"key_{i}": 10**9 + i for i in range(12)}
    name = sweeps.setting_name(long_setting)
    assert name.startswith("h") and len(name) == 11
    assert name == sweeps.setting_name(dict(reversed(long_setting.items())))  # stable
    assert sweeps.setting_name({"optimizer": "a/b"}).startswith("h")  # no path separators


@pytest.mark.parametrize(
    ("family_sweep", "message"),
    [
        ({"grid": {"learning_rate": [0.01, -1]}}, "learning_rate.1: -1 is less than"),
        ({"grid": {"optimizer": ["adam", "lbfgs"]}}, "optimizer.1: 'lbfgs' is not one of"),
        ({"settings": [{"hidden_units": 10}]}, "settings.0.hidden_units: unknown hyperparameter"),
        ({"grid": {"seed": [1, 2]}}, "seeds are set by sweep.seeds"),
        ({}, "needs a grid, settings or random"),
    ],
)
def test_invalid_sweeps_name_the_key_and_the_problem(family_sweep, message):
    with pytest.raises(settings.ConfigError, match="sweep.families.softmax") as error:
        config_with({"families": {"softmax": family_sweep}})
    assert message in str(error.value)


def test_schema_rejects_malformed_sweeps():
    for sweep, key in [
        ({"families": {"resnet": {"settings": [{}]}}}, "sweep.families"),
        ({"seeds": [0, 0]}, "sweep.seeds"),
        ({"threads": 0}, "sweep.threads"),
        ({"families": {"softmax": {"grid": {"learning_rate": []}}}}, "learning_rate"),
    ]:
        with pytest.raises(settings.ConfigError, match=key):
            config_with(sweep)


def test_sweeping_a_family_outside_models_is_an_error():
    with pytest.raises(settings.ConfigError, match="cnn is not in models"):
        config_with({"families": {"cnn": {"settings": [{}]}}})


# --- aggregation -------------------------------------------------------------------------


def result(setting: str, seed: int, val: float, test: float, **hyperparameters) -> dict:
    return {
        "family": "softmax",
        "setting": setting,
        "seed": seed,
        "run": f"{setting}+seed={seed}",
        "hyperparameters": hyperparameters,
        "val_accuracy": val,
        "test_accuracy": test,
    }


RESULTS = [
    # "a" is best on validation, "b" would be best on test: selection must pick "a".
    result("learning_rate=0.01", 0, 0.90, 0.80, learning_rate=0.01),
    result("learning_rate=0.01", 1, 0.92, 0.82, learning_rate=0.01),
    result("learning_rate=0.1", 0, 0.85, 0.95, learning_rate=0.1),
    result("learning_rate=0.1", 1, 0.87, 0.97, learning_rate=0.1),
]


def test_winner_is_chosen_on_validation_and_reported_with_its_test_accuracy():
    rows = aggregate.summarise(RESULTS)
    winner, runner_up = rows
    assert winner["setting"] == "learning_rate=0.01" and winner["winner"] and winner["rank"] == 1
    assert not runner_up["winner"] and runner_up["rank"] == 2
    assert winner["seeds"] == 2
    assert winner["val_accuracy_mean"] == pytest.approx(0.91)
    assert winner["val_accuracy_std"] == pytest.approx(0.0141421, abs=1e-6)  # sample std
    assert winner["test_accuracy_mean"] == pytest.approx(0.81)
    assert runner_up["val_gap_to_winner"] == pytest.approx(0.05)
    (line,) = aggregate.summary_lines(rows)
    assert line.startswith("softmax: learning_rate=0.01 wins among 2 settings")
    assert "0.9100 ± 0.0141 (n=2)" in line and "0.0500 ahead of learning_rate=0.1" in line
    assert "test accuracy: 0.8100 ± 0.0141 (n=2)" in line
    assert "seed noise" not in line


def test_a_margin_within_the_seeds_spread_is_called_noise():
    rows = aggregate.summarise(
        [
            result("a", 0, 0.90, 0.9, x=1),
            result("a", 1, 0.80, 0.9, x=1),
            result("b", 0, 0.84, 0.9, x=2),
        ]
    )
    assert rows[1]["val_accuracy_std"] is None  # one seed: no standard deviation
    assert "within seed noise" in aggregate.summary_lines(rows)[0]


def write_run(directory: Path, hyperparameters: dict, val: float, test: float) -> dict:
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(
        json.dumps({"hyperparameters": hyperparameters, "test_accuracy": test})
    )
    (directory / "history.csv").write_text(
        "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n"
        f"1,1.0,0.5,1.0,{val - 0.1},1.0\n2,0.5,0.8,0.6,{val},1.0\n"
    )
    return {"metrics": directory / "metrics.json", "history": directory / "history.csv"}


def test_aggregate_writes_sorted_tables_plot_and_summary(tmp_path):
    runs = []
    for r in RESULTS + [result("base", 0, 0.5, 0.5, learning_rate=0.001)]:
        hp = {**r["hyperparameters"], "epochs": 2, "seed": r["seed"]}
        files = write_run(tmp_path / r["run"], hp, r["val_accuracy"], r["test_accuracy"])
        runs.append({key: r[key] for key in ("family", "run", "setting", "seed")} | files)
    out = {name: tmp_path / "sweep" / name for name in ("s.csv", "r.csv", "p.png", "sum.txt")}
    lines = aggregate.aggregate(
        runs,
        settings_dest=out["s.csv"],
        runs_dest=out["r.csv"],
        plot_dest=out["p.png"],
        summary_dest=out["sum.txt"],
    )
    table = aggregate.read_settings(out["s.csv"])
    assert [row["setting"] for row in table] == ["learning_rate=0.01", "learning_rate=0.1", "base"]
    assert [row["winner"] for row in table] == ["yes", "", ""]
    assert [row["learning_rate"] for row in table] == ["0.01", "0.1", "0.001"]  # as in config
    assert "epochs" not in table[0]  # not swept: no column
    assert aggregate.format_mean_std(table[0], "val_accuracy") == "0.9100 ± 0.0141"
    with open(out["r.csv"], newline="") as handle:
        per_run = list(csv.DictReader(handle))
    assert len(per_run) == 5 and sum(row["winner"] == "yes" for row in per_run) == 2
    assert out["p.png"].read_bytes()[:4] == b"\x89PNG"
    assert out["sum.txt"].read_text().splitlines() == lines


def test_report_shows_the_study_and_details_only_the_winners(tmp_path):
    from mnistflow import plots

    runs, aggregate_runs = [], []
    for r in RESULTS:
        files = write_run(tmp_path / r["run"], {**r["hyperparameters"], "seed": r["seed"]}, 0, 0)
        metrics = json.loads(files["metrics"].read_text())
        metrics.update(family="softmax", test_loss=0.5, per_class={}, software={})
        files["metrics"].write_text(json.dumps(metrics))
        png = tmp_path / r["run"] / "figure.png"
        plots.confusion_matrix(np.eye(2), ["0", "1"], "cm", png)
        name = f"softmax/{r['run']}"
        runs.append({"run": name, **files, "confusion_png": png, "misclassified_png": png})
        aggregate_runs.append({key: r[key] for key in ("family", "run", "setting", "seed")} | files)
    sweep = {key: tmp_path / "sweep" / key for key in ("settings", "runs", "plot", "summary")}
    aggregate.aggregate(
        aggregate_runs,
        settings_dest=sweep["settings"],
        runs_dest=sweep["runs"],
        plot_dest=sweep["plot"],
        summary_dest=sweep["summary"],
    )
    dest = tmp_path / "report.html"
    report.build_report(runs, {"sweep": {}}, dest, title="t", sweep=sweep)
    page = dest.read_text()
    assert "<h2>Parameter study</h2>" in page and "★ winner" in page
    # The winner's seeds keep their sections, the others only their rows in the tables.
    assert page.count("<h2>softmax/") == 2
    assert "<h2>softmax/learning_rate=0.01+seed=1</h2>" in page


def test_array_jobs_need_an_ungrouped_study_and_jobs_for_every_run():
    assert sweeps.array_job_errors(set(), grouped=True, jobs=2, runs=100) == []  # no arrays
    assert sweeps.array_job_errors({"report"}, grouped=True, jobs=2, runs=100) == []
    assert sweeps.array_job_errors({"train_study"}, grouped=False, jobs=100, runs=100) == []
    assert sweeps.array_job_errors({"all"}, grouped=False, jobs=None, runs=100) == []
    grouped, few = sweeps.array_job_errors({"train_rung"}, grouped=True, jobs=50, runs=100)
    assert "set sweep.group: false" in grouped
    assert "--jobs 50: below the study's 100 runs" in few and "--jobs 100 or more" in few
    assert "issue 473" in few
    (unsafe,) = sweeps.array_job_errors(
        {"train_study"}, grouped=False, jobs=None, runs=4, config_args=["seed=1", "x=$(id)"]
    )
    assert "--config x=$(id)" in unsafe and "--configfile" in unsafe
    # The rules of the runs outside the study: the study's own rule is named for the fix.
    (wrong_rule,) = sweeps.array_job_errors({"evaluate", "train"}, False, jobs=None, runs=4)
    assert "--slurm-array-jobs evaluate,train" in wrong_rule
    assert "jobs of train_study, train_rung" in wrong_rule
    # In the container a study run stays a train and an evaluate job (sweep.smk).
    container_rules = ["train", "evaluate", "train_rung"]
    assert sweeps.array_job_errors({"train"}, False, None, 4, study_rules=container_rules) == []
