"""Successive halving's decisions, accounting and config checks (mnistflow.halving)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from mnistflow import aggregate, halving, settings, sweeps

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def config_with(family_sweep: dict, seeds=(0,)) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        models=["softmax"], sweep={"seeds": list(seeds), "families": {"softmax": family_sweep}}
    )
    settings.validate_config(config, SCHEMA, validate)
    return config


def history(path: Path, val_accuracies: list[float]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "val_accuracy"])
        writer.writeheader()
        for epoch, value in enumerate(val_accuracies, start=1):
            writer.writerow({"epoch": epoch, "val_accuracy": value})
    return path


def test_a_halving_study_trains_every_setting_for_the_last_rungs_epochs():
    runs = sweeps.study(
        config_with({"grid": {"learning_rate": [0.01, 0.1]}, "halving": {"rungs": [1, 3, 9]}})
    )
    assert {run.hyperparameters["epochs"] for run in runs} == {9}  # the schedule's budget
    assert all("epochs" not in run.name for run in runs)


def test_select_promotes_the_best_third_by_mean_validation_accuracy_over_seeds(tmp_path):
    # Two seeds per setting; "c" is best on average although "a" has the single best run.
    accuracies = {"a": [0.95, 0.55], "b": [0.70, 0.70], "c": [0.90, 0.85], "d": [0.60, 0.65],
                  "e": [0.80, 0.81], "f": [0.10, 0.20]}  # fmt: skip
    runs = [
        {
            "setting": setting,
            "run": f"{setting}+seed={seed}",
            "seed": seed,
            # epoch 2's accuracy decides at the rung of 2 epochs; epoch 3 is not looked at
            "history": history(tmp_path / f"{setting}{seed}.csv", [0.0, value, 1.0 - value]),
        }
        for setting, values in accuracies.items()
        for seed, value in enumerate(values)
    ]
    decision = halving.select(runs, epochs=2, reduction=3)
    assert decision["kept"] == 2
    ranked = [row["setting"] for row in decision["settings"]]
    assert ranked == ["c", "e", "a", "b", "d", "f"]
    assert halving.promoted_from(decision) == ["c", "e"]
    a = decision["settings"][2]
    assert a["val_accuracy_mean"] == pytest.approx(0.75)
    assert a["behind_best"] == pytest.approx(0.875 - 0.75)
    assert a["behind_cutoff"] == pytest.approx(0.805 - 0.75)
    assert [r["val_accuracy"] for r in a["runs"]] == [0.95, 0.55]


def test_ties_go_to_the_setting_whose_name_sorts_first_and_one_always_continues(tmp_path):
    runs = [
        {"setting": s, "run": s, "seed": 0, "history": history(tmp_path / s, [0.5])}
        for s in ("b", "a")
    ]
    decision = halving.select(runs, epochs=1, reduction=3)
    assert decision["kept"] == 1 and halving.promoted_from(decision) == ["a"]


def test_compute_spent_counts_each_epoch_once_and_compares_with_the_grid():
    # 9 settings x 2 seeds, rungs 1, 3, 9, eta 3: 6 stop after 1, 2 after 3, 1 finishes.
    decisions = [
        {"epochs": 1, "kept": 3, "settings": [{}] * 9},
        {"epochs": 3, "kept": 1, "settings": [{}] * 3},
    ]
    spent = halving.compute_spent([1, 3, 9], decisions, runs=18, seeds=2)
    assert spent["epochs_trained"] == (6 * 1 + 2 * 3 + 1 * 9) * 2
    assert spent["grid_epochs"] == 18 * 9
    assert spent["fraction"] == pytest.approx(42 / 162)


@pytest.mark.parametrize(
    ("family_sweep", "message"),
    [
        ({"grid": {"learning_rate": [0.1]}, "halving": {"rungs": [3, 1]}}, "increasing"),
        ({"grid": {"learning_rate": [0.1]}, "halving": {"rungs": [2, 2]}}, "increasing"),
        ({"grid": {"epochs": [1, 2]}, "halving": {"rungs": [1, 2]}}, "sets epochs itself"),
        ({"grid": {"learning_rate": [0.1]}, "halving": {"rungs": [1]}}, "at least two"),
        ({"grid": {"learning_rate": [0.1]}, "halving": {"rungs": [1, 2], "eta": 1}}, "minimum"),
    ],
)
def test_a_bad_halving_block_is_refused_by_name(family_sweep, message):
    with pytest.raises(settings.ConfigError, match="sweep.families.softmax") as error:
        config_with(family_sweep)
    assert message in str(error.value)


def test_the_aggregate_shows_where_each_setting_stopped_and_the_compute_spent(tmp_path):
    decisions = []
    for epochs, ranked, kept in ((1, ["a", "b", "c"], 1),):
        decision = halving.select(
            [
                {
                    "setting": s,
                    "run": f"{s}+seed=0",
                    "seed": 0,
                    "history": history(tmp_path / f"{s}.csv", [0.9 - 0.1 * i]),
                }  # fmt: skip
                for i, s in enumerate(ranked)
            ],
            epochs=epochs,
            reduction=3,
        )
        assert decision["kept"] == kept
        path = tmp_path / f"rung-{epochs}.json"
        halving.write_decision(path, {"family": "softmax", **decision})
        decisions.append(path)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        '{"hyperparameters": {"learning_rate": 0.1, "seed": 0}, "test_accuracy": 0.8}'
    )
    final_history = history(tmp_path / "final.csv", [0.9, 0.92, 0.93])
    out = {name: tmp_path / f"{name}.out" for name in ("settings", "runs", "plot", "summary")}
    lines = aggregate.aggregate(
        [
            {
                "family": "softmax",
                "setting": "a",
                "seed": 0,
                "run": "a+seed=0",
                "metrics": metrics,
                "history": final_history,
            }
        ],  # fmt: skip
        settings_dest=out["settings"],
        runs_dest=out["runs"],
        plot_dest=tmp_path / "plot.png",
        summary_dest=out["summary"],
        rungs_dest=tmp_path / "rungs.csv",
        halving={"softmax": {"rungs": [1, 3], "eta": 3, "runs": 3, "seeds": 1}},
        decisions=decisions,
    )
    with open(tmp_path / "rungs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["setting"], r["stopped_at"], r["epochs_trained"]) for r in rows] == [
        ("b", "1", "1"),
        ("c", "1", "1"),
        ("a", "", "3"),
    ]
    assert float(rows[1]["behind_cutoff"]) == pytest.approx(0.2)
    assert any("3 -> 1 settings; 5 epochs trained of the 9" in line for line in lines), lines
    assert any("2 of 3 settings stopped, 0.1000 to 0.2000 behind" in line for line in lines)
