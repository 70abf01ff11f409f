"""Successive halving: every setting trains a few epochs, the best continue from their checkpoints.

A family's study with ``halving: {rungs: [1, 3, 9], eta: 3}`` trains every setting (each seed)
to the first rung's epochs, keeps the best ``1/eta`` of the settings by mean validation accuracy
at that epoch, continues those from their checkpoints to the next rung, and so on; the settings
kept after the last-but-one rung train to the last rung, which is the study's maximal budget: a
halving study's runs have ``epochs`` = the last rung, so the learning-rate schedule is the one
of the full training, and a run promoted to the end holds the weights of the same setting
trained once to the end (mnistflow.training stops at a rung without touching the schedule).

Selection reads the validation accuracy of the rung's epoch from the runs' rung histories;
the test set takes no part. Ties go to the setting whose name sorts first.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from mnistflow.atomic import write_text


def rungs(family_sweep: dict) -> list[int]:
    """The rungs' epochs, increasing; [] for a study without halving."""
    halving = family_sweep.get("halving") or {}
    return list(halving.get("rungs") or [])


def eta(family_sweep: dict) -> int:
    return (family_sweep.get("halving") or {}).get("eta", 3)


def kept(count: int, reduction: int) -> int:
    """How many of ``count`` settings continue: the best 1/eta, at least one."""
    return max(1, count // reduction)


def config_errors(where: str, family_sweep: dict) -> list[str]:
    """Problems of a family's ``halving`` block, each naming the key and the fix."""
    halving = family_sweep.get("halving")
    if not halving:
        return []
    steps = halving.get("rungs") or []
    lines = []
    if len(steps) < 2 or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        lines.append(
            f"  {where}.halving.rungs: {steps} needs at least two epochs, increasing, e.g. "
            "[1, 3, 9] (the last is every setting's maximal budget)"
        )
    swept_epochs = "epochs" in (family_sweep.get("grid") or {}) or any(
        "epochs" in setting for setting in family_sweep.get("settings") or []
    )
    if swept_epochs or "epochs" in ((family_sweep.get("random") or {}).get("distributions") or {}):
        lines.append(
            f"  {where}: a halving study sets epochs itself (the last rung, {steps[-1:]}); "
            "remove epochs from its grid, settings and distributions"
        )
    return lines


def history_val_accuracy(path: str | Path, epoch: int) -> float:
    """Validation accuracy after ``epoch`` (1-based) in a history CSV."""
    with open(path, newline="") as handle:
        rows = {int(row["epoch"]): row for row in csv.DictReader(handle)}
    if epoch not in rows:
        raise ValueError(f"{path}: no epoch {epoch} (has {sorted(rows)})")
    return float(rows[epoch]["val_accuracy"])


def select(runs: list[dict], epochs: int, reduction: int) -> dict:
    """One rung's decision. ``runs``: dicts with setting, run, seed and history (a rung CSV).

    Settings are ranked by their seeds' mean validation accuracy after ``epochs``; the best
    ``kept(n, eta)`` are promoted. The decision lists every setting with its rank, mean, its
    gap to the rung's best and to the last promoted one, and its runs.
    """
    by_setting: dict[str, list[dict]] = {}
    for run in runs:
        by_setting.setdefault(run["setting"], []).append(
            {**run, "val_accuracy": history_val_accuracy(run["history"], epochs)}
        )
    means = {s: statistics.fmean(r["val_accuracy"] for r in rs) for s, rs in by_setting.items()}
    ranked = sorted(means, key=lambda s: (-means[s], s))
    keep = kept(len(ranked), reduction)
    best, cutoff = means[ranked[0]], means[ranked[keep - 1]]
    return {
        "epochs": epochs,
        "eta": reduction,
        "kept": keep,
        "settings": [
            {
                "setting": setting,
                "rank": rank,
                "promoted": rank <= keep,
                "val_accuracy_mean": means[setting],
                "behind_best": best - means[setting],
                "behind_cutoff": max(0.0, cutoff - means[setting]),
                "runs": sorted(
                    (
                        {"run": r["run"], "seed": r["seed"], "val_accuracy": r["val_accuracy"]}
                        for r in by_setting[setting]
                    ),
                    key=lambda r: r["seed"],
                ),
            }
            for rank, setting in enumerate(ranked, start=1)
        ],
    }


def write_decision(dest: str | Path, decision: dict) -> None:
    write_text(dest, json.dumps(decision, indent=1) + "\n")


def promoted_from(decision: dict) -> list[str]:
    """The settings a rung's decision promotes, by rank."""
    return [row["setting"] for row in decision["settings"] if row["promoted"]]


def promoted(decision_path: str | Path) -> list[str]:
    """The settings a rung's decision file promotes, by rank."""
    return promoted_from(json.loads(Path(decision_path).read_text()))


RUNG_COLUMNS = (
    "family",
    "setting",
    "stopped_at",
    "epochs_trained",
    "rank",
    "of",
    "val_accuracy_mean",
    "behind_best",
    "behind_cutoff",
)


def stopped_rows(family: str, decisions: list[dict], seeds: int) -> list[dict]:
    """One row per setting that a rung stopped: where, its rank there, how far it trailed.

    ``behind_cutoff``: its mean validation accuracy below the last promoted setting's.
    ``epochs_trained``: by all its seeds together.
    """
    rows = []
    for decision in decisions:
        for row in decision["settings"]:
            if not row["promoted"]:
                rows.append(
                    {
                        "family": family,
                        "setting": row["setting"],
                        "stopped_at": decision["epochs"],
                        "epochs_trained": decision["epochs"] * seeds,
                        "rank": row["rank"],
                        "of": len(decision["settings"]),
                        **{k: row[k] for k in ("val_accuracy_mean", "behind_best")},
                        "behind_cutoff": row["behind_cutoff"],
                    }
                )
    return rows


def compute_spent(rungs: list[int], decisions: list[dict], runs: int, seeds: int) -> dict:
    """Epochs trained by the study against a full grid of its settings (each to the last rung).

    A promoted run resumes from its checkpoint, so it trains each epoch once: a run stopped at
    a rung trained that rung's epochs, a finalist the last rung's.
    """
    finalists = decisions[-1]["kept"] * seeds if decisions else runs
    trained = sum(
        decision["epochs"] * (len(decision["settings"]) - decision["kept"]) * seeds
        for decision in decisions
    )
    trained += finalists * rungs[-1]
    grid = runs * rungs[-1]
    return {"epochs_trained": trained, "grid_epochs": grid, "fraction": trained / grid}


def summary_lines(family: str, spec: dict, decisions: list[dict]) -> list[str]:
    """The rungs in words: how many settings each kept, how far the stopped ones trailed."""
    rungs, seeds = spec["rungs"], spec["seeds"]
    counts = [len(d["settings"]) for d in decisions] + [decisions[-1]["kept"]]
    spent = compute_spent(rungs, decisions, spec["runs"], seeds)
    lines = [
        f"{family}: successive halving over rungs of {', '.join(map(str, rungs))} epochs "
        f"(eta {spec.get('eta', 3)}): {' -> '.join(map(str, counts))} settings; "
        f"{spent['epochs_trained']} epochs trained of the {spent['grid_epochs']} a full grid "
        f"of its settings would train ({spent['fraction']:.0%})"
    ]
    for decision in decisions:
        stopped = [row for row in decision["settings"] if not row["promoted"]]
        if stopped:
            gaps = [row["behind_cutoff"] for row in stopped]
            lines.append(
                f"{family}: after {decision['epochs']} epochs {len(stopped)} of "
                f"{len(decision['settings'])} settings stopped, "
                f"{min(gaps):.4f} to {max(gaps):.4f} behind the last promoted one "
                "in validation accuracy"
            )
    return lines
