"""Successive halving against the full grid of the same settings; prints a table.

    python perf/halving.py [--mnist ../shared/data/mnist] [--cores 2] [--halving-first]

The same 9 mlp settings (3 learning rates x 3 widths, seed 0), each to 9 epochs in the
grid; with successive halving over rungs of 1, 3 and 9 epochs (eta 3): 9 settings train 1
epoch, 3 continue to 3, 1 to 9. For each: the winner (by validation accuracy), its test
accuracy, the epochs trained, and the wall and CPU time from the preprocessed data to the
report (CPU time: of all processes the study ran; other load on the machine inflates it far
less than the wall time).
On the bundled sample by default; with --mnist, on the real MNIST from that folder.
All runs happen in a scratch copy of the workflow; nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from run import copy_workflow, snakemake_command, timed  # noqa: E402
from sweep import cpu_name  # noqa: E402

RUNGS = [1, 3, 9]
GRID = {"learning_rate": [0.0003, 0.001, 0.003], "hidden_units": [32, 128, 512]}


def study(dataset: str, mnist: Path | None, halving: bool) -> dict:
    family_sweep = {"grid": GRID}
    if halving:
        family_sweep["halving"] = {"rungs": RUNGS, "eta": 3}
    config = {
        "dataset": dataset,
        "models": ["mlp"],
        "hyperparameters": {"mlp": {"epochs": RUNGS[-1], "schedule": "cosine"}},
        "sweep": {"threads": 1, "families": {"mlp": family_sweep}},
    }
    if mnist is not None:
        config["download"] = {"mirrors": [str(mnist)], "default_mirrors": False}
    return config


def outcome(workdir: Path, dataset: str) -> dict:
    """Winner, its test accuracy and the epochs trained, from the study's tables."""
    sweep = workdir / "results" / dataset / "sweep"
    with open(sweep / "settings.csv", newline="") as handle:
        winner = next(row for row in csv.DictReader(handle) if row["winner"])
    with open(sweep / "rungs.csv", newline="") as handle:
        rungs = list(csv.DictReader(handle))
    # Without halving every setting trains to the end.
    with open(sweep / "settings.csv", newline="") as handle:
        settings = list(csv.DictReader(handle))
    epochs = (
        sum(int(row["epochs_trained"]) for row in rungs)
        if rungs
        else RUNGS[-1] * sum(int(row["seeds"]) for row in settings)
    )
    return {
        "winner": winner["setting"],
        "val": float(winner["val_accuracy_mean"]),
        "test": float(winner["test_accuracy_mean"]),
        "epochs": epochs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=Path, help="folder with MNIST's four IDX .gz files")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--halving-first", action="store_true", help="run the halving study before the grid"
    )
    args = parser.parse_args()
    dataset = "mnist" if args.mnist else "mnist-sample"
    mnist = args.mnist.resolve() if args.mnist else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        studies = [("full grid", False), ("successive halving", True)]
        for name, halving in reversed(studies) if args.halving_first else studies:
            workdir = copy_workflow(Path(tmp) / name.replace(" ", "-"))
            (workdir / "study.yaml").write_text(yaml.safe_dump(study(dataset, mnist, halving)))
            config = ["--configfile", "study.yaml", "--cores", str(args.cores)]
            # The data first, outside the timing: both studies start from preprocessed data.
            timed(snakemake_command(*config, f"results/{dataset}/data.h5"), workdir)
            before = os.times()
            seconds = timed(snakemake_command(*config), workdir)
            after = os.times()
            cpu = sum(
                getattr(after, f) - getattr(before, f) for f in ("children_user", "children_system")
            )
            rows.append((name, seconds, cpu, outcome(workdir, dataset)))
            shutil.rmtree(workdir / ".snakemake", ignore_errors=True)
    print(f"\n{dataset}, mlp, 9 settings; {cpu_name()}, load {os.getloadavg()[0]:.1f}\n")
    print(
        "| study | winner | val accuracy | test accuracy | epochs trained | wall time | CPU time |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, seconds, cpu, result in rows:
        print(
            f"| {name} | {result['winner']} | {result['val']:.4f} | {result['test']:.4f} "
            f"| {result['epochs']} | {seconds:.0f} s | {cpu:.0f} s |"
        )
    grid, halved = sorted(rows, key=lambda row: row[0] != "full grid")
    print(
        f"\nhalving / grid: epochs {halved[3]['epochs'] / grid[3]['epochs']:.2f}, "
        f"wall time {halved[1] / grid[1]:.2f}, CPU time {halved[2] / grid[2]:.2f}"
    )


if __name__ == "__main__":
    main()
