"""Aggregate a parameter study: one row per setting, the winner per family, and plots.

Selection is honest: settings are ranked on validation accuracy only (the last epoch's, i.e.
of the weights that were saved and evaluated); test accuracy is reported beside the ranking
and never used for it. With several seeds per setting, mean and sample standard deviation.
No TensorFlow here: this reads the runs' history.csv and metrics.json.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path

from mnistflow import halving as halving_module
from mnistflow import plots
from mnistflow.atomic import write_text
from mnistflow.hyperparameter_values import hyperparameter_text

RUN_COLUMNS = ("family", "setting", "seed", "run", "val_accuracy", "test_accuracy", "winner")
SETTING_COLUMNS = (
    "family",
    "rank",
    "winner",
    "setting",
    "seeds",
    "val_accuracy_mean",
    "val_accuracy_std",
    "val_gap_to_winner",
    "test_accuracy_mean",
    "test_accuracy_std",
)


def read_run(run: dict) -> dict:
    """One run's result: ``run`` holds family, run, setting, seed, metrics and history paths."""
    metrics = json.loads(Path(run["metrics"]).read_text())
    with open(run["history"], newline="") as handle:
        last_epoch = list(csv.DictReader(handle))[-1]
    hyperparameters = {k: v for k, v in metrics["hyperparameters"].items() if k != "seed"}
    return {
        "family": run["family"],
        "setting": run["setting"],
        "seed": run["seed"],
        "run": run["run"],
        "hyperparameters": hyperparameters,
        "val_accuracy": float(last_epoch["val_accuracy"]),
        "test_accuracy": float(metrics["test_accuracy"]),
    }


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarise(results: list[dict]) -> list[dict]:
    """One row per (family, setting), ranked within its family by mean validation accuracy.

    Families keep the order in which they first appear; ties rank by setting name.
    """
    grouped: dict[tuple[str, str], list[dict]] = {}
    for result in results:
        grouped.setdefault((result["family"], result["setting"]), []).append(result)
    rows = []
    for (family, setting), runs in grouped.items():
        val_mean, val_std = _mean_std([r["val_accuracy"] for r in runs])
        test_mean, test_std = _mean_std([r["test_accuracy"] for r in runs])
        rows.append(
            {
                "family": family,
                "setting": setting,
                "hyperparameters": runs[0]["hyperparameters"],
                "seeds": len(runs),
                "val_accuracy_mean": val_mean,
                "val_accuracy_std": val_std,
                "test_accuracy_mean": test_mean,
                "test_accuracy_std": test_std,
            }
        )
    family_order = {family: i for i, family in enumerate(dict.fromkeys(r["family"] for r in rows))}
    rows.sort(key=lambda r: (family_order[r["family"]], -r["val_accuracy_mean"], r["setting"]))
    for family in family_order:
        ranked = [row for row in rows if row["family"] == family]
        best = ranked[0]["val_accuracy_mean"]
        for rank, row in enumerate(ranked, start=1):
            row.update(
                rank=rank, winner=rank == 1, val_gap_to_winner=best - row["val_accuracy_mean"]
            )
    return rows


def swept_keys(rows: list[dict], family: str) -> list[str]:
    """The hyperparameters that take more than one value among a family's settings."""
    values: dict[str, set[str]] = {}
    for row in rows:
        if row["family"] == family:
            for key, value in row["hyperparameters"].items():
                values.setdefault(key, set()).add(json.dumps(value))
    return sorted(key for key, seen in values.items() if len(seen) > 1)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def _csv(columns: Iterable[str], rows: Iterable[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = list(columns)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return out.getvalue()


def settings_csv(rows: list[dict]) -> str:
    """The aggregate table, plus one column per swept hyperparameter (blank where unswept)."""
    swept = {row["family"]: swept_keys(rows, row["family"]) for row in rows}
    flat = [
        {
            **row,
            **{
                key: hyperparameter_text(row["hyperparameters"][key])
                for key in swept[row["family"]]
            },
        }
        for row in rows
    ]
    return _csv([*SETTING_COLUMNS, *sorted(set().union(*swept.values()))], flat)


def runs_csv(results: list[dict], rows: list[dict]) -> str:
    winners = {(row["family"], row["setting"]) for row in rows if row["winner"]}
    return _csv(
        RUN_COLUMNS,
        ({**r, "winner": (r["family"], r["setting"]) in winners} for r in results),
    )


def _plus_minus(mean: float, std: float | None, seeds: int) -> str:
    spread = f" ± {std:.4f}" if std is not None else ""
    return f"{mean:.4f}{spread} (n={seeds})"


def summary_lines(rows: list[dict]) -> list[str]:
    """Per family: which setting won on validation accuracy, by how much, and its test accuracy."""
    lines = []
    for family in dict.fromkeys(row["family"] for row in rows):
        ranked = [row for row in rows if row["family"] == family]
        winner = ranked[0]
        val = _plus_minus(winner["val_accuracy_mean"], winner["val_accuracy_std"], winner["seeds"])
        line = f"{family}: {winner['setting']} wins among {len(ranked)} settings: "
        line += f"validation accuracy {val}"
        if len(ranked) > 1:
            runner_up = ranked[1]
            margin = runner_up["val_gap_to_winner"]
            line += f", {margin:.4f} ahead of {runner_up['setting']}"
            stds = (winner["val_accuracy_std"], runner_up["val_accuracy_std"])
            if margin < max((std for std in stds if std), default=0.0):
                line += " (within seed noise: less than one standard deviation)"
        test = _plus_minus(
            winner["test_accuracy_mean"], winner["test_accuracy_std"], winner["seeds"]
        )
        lines.append(f"{line}; its test accuracy: {test}")
    return lines


def aggregate(
    runs: list[dict],
    *,
    settings_dest: str | Path,
    runs_dest: str | Path,
    plot_dest: str | Path,
    summary_dest: str | Path,
    rungs_dest: str | Path | None = None,
    halving: dict | None = None,
    decisions: Iterable[str | Path] = (),
) -> list[str]:
    """Read every run, write the tables, the plot and the summary; return the summary lines.

    ``halving``: {family: its halving block, with the study's ``runs`` and ``seeds`` counts};
    ``decisions``: the rungs' decision files (mnistflow.halving). ``rungs_dest`` gets one row
    per setting: where it stopped, or that it finished, and how far it trailed there.
    """
    results = [read_run(run) for run in runs]
    rows = summarise(results)
    write_text(settings_dest, settings_csv(rows))
    write_text(runs_dest, runs_csv(results, rows))
    panels = {row["family"]: swept_keys(rows, row["family"]) or ["setting"] for row in rows}
    plots.sweep_validation_accuracy(rows, results, panels, plot_dest)
    lines = summary_lines(rows)
    rung_rows, rung_lines = _halving(rows, halving or {}, decisions)
    lines += rung_lines
    if rungs_dest is not None:
        write_text(rungs_dest, _csv(halving_module.RUNG_COLUMNS, rung_rows))
    write_text(summary_dest, "\n".join(lines) + "\n")
    return lines


def _halving(rows: list[dict], specs: dict, decision_paths: Iterable) -> tuple[list, list]:
    """Rung table rows (stopped settings, then the finalists) and summary lines per family."""
    decisions: dict[str, list[dict]] = {}
    for path in decision_paths:
        decision = json.loads(Path(path).read_text())
        decisions.setdefault(decision["family"], []).append(decision)
    table, lines = [], []
    for family, spec in specs.items():
        rungs = sorted(decisions.get(family, []), key=lambda d: d["epochs"])
        table += halving_module.stopped_rows(family, rungs, spec["seeds"])
        finalists = [row for row in rows if row["family"] == family]
        table += [
            {
                "family": family,
                "setting": row["setting"],
                "stopped_at": "",  # finished: trained to the last rung
                "epochs_trained": spec["rungs"][-1] * row["seeds"],
                "rank": row["rank"],
                "of": len(finalists),
                "val_accuracy_mean": row["val_accuracy_mean"],
                "behind_best": row["val_gap_to_winner"],
                "behind_cutoff": 0.0,
            }
            for row in finalists
        ]
        lines += halving_module.summary_lines(family, spec, rungs)
    return table, lines


def read_settings(path: str | Path) -> list[dict]:
    """The settings table as written by ``aggregate`` (strings; blanks for missing)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def format_mean_std(row: dict, metric: str) -> str:
    """``0.9123 ± 0.0040`` from a settings-table row (as read back from the CSV)."""
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if not mean or math.isnan(float(mean)):
        return ""
    return f"{float(mean):.4f}" + (f" ± {float(std):.4f}" if std else "")
