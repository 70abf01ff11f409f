"""Benchmarks of parameter studies; prints a table of medians (not a timed test).

    python perf/sweep.py [--repeats 3] [--epochs 5] [--skip-parallel]

1. Planning: `snakemake -n` of a 1,000-run study (softmax: 10 learning rates x 10 batch
   sizes x 10 seeds: 1,000 train_study jobs, each a run's training and evaluation); of a
   1,000-setting random search (1,005 jobs); of the same random search with successive
   halving (rungs 1, 3, 9: planned up to the first rung's decision, about 1,000 jobs).
   Target (issue 22): < 5 s. Wall time, and the CPU time of the snakemake process, which
   other load on the machine inflates far less.
2. Parallel training: an 8-run softmax study (4 learning rates x 2 seeds) on the bundled
   mnist-sample, from its trainings to the report, with `--cores 1` and `--cores 2` (each
   training uses sweep.threads = 1 thread). Target on a 2-core machine: -j2 <= 0.65 x -j1.
   The data set is preprocessed once beforehand; the runs alternate -j1 / -j2 so that other
   load on the machine hits both alike.
All runs happen in a scratch copy of the workflow; nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from run import copy_workflow, snakemake_command, timed  # noqa: E402


def cpu_name() -> str:
    """The CPU the figures were measured on (lscpu's model name), to print beside them."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def snakemake(workdir: Path, *args: str) -> float:
    """Seconds one `snakemake` invocation takes."""
    return timed(snakemake_command(*args), workdir)


def study_config(grid: dict, seeds: list[int], epochs: int) -> dict:
    return {
        "dataset": "mnist-sample",
        "models": ["softmax"],
        "hyperparameters": {"softmax": {"epochs": epochs}},
        "sweep": {"seeds": seeds, "threads": 1, "families": {"softmax": {"grid": grid}}},
    }


RANDOM_SEARCH = {
    "samples": 1000,
    "distributions": {
        "learning_rate": {"loguniform": [0.0001, 0.3]},
        "batch_size": {"int": [16, 256]},
    },
}


def planning_configs() -> dict[str, dict]:
    grid = study_config(
        {
            "learning_rate": [round(0.001 * 1.5**i, 6) for i in range(10)],
            "batch_size": [32 + 16 * i for i in range(10)],
        },
        seeds=list(range(10)),
        epochs=1,
    )
    search = study_config({}, seeds=[0], epochs=9)
    search["sweep"]["families"]["softmax"] = {"random": RANDOM_SEARCH}
    halving = study_config({}, seeds=[0], epochs=9)
    halving["sweep"]["families"]["softmax"] = {
        "random": RANDOM_SEARCH,
        "halving": {"rungs": [1, 3, 9], "eta": 3},
    }
    return {
        "a 1,000-run grid study (snakemake -n)": grid,
        "a 1,000-setting random search": search,
        "the same with successive halving": halving,
    }


def planning_seconds(workdir: Path, repeats: int, config: dict) -> tuple[list, list]:
    """Wall and CPU seconds of ``repeats`` plans."""
    (workdir / "plan.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "-n", "--configfile", "plan.yaml")  # warm the file cache
    wall, cpu = [], []
    for _ in range(repeats):
        before = os.times()
        wall.append(snakemake(workdir, "-n", "--configfile", "plan.yaml"))
        after = os.times()
        cpu.append(
            after.children_user
            + after.children_system
            - before.children_user
            - before.children_system
        )
    return wall, cpu


def parallel_seconds(workdir: Path, repeats: int, epochs: int) -> dict[int, list[float]]:
    config = study_config({"learning_rate": [0.003, 0.01, 0.03, 0.1]}, seeds=[0, 1], epochs=epochs)
    (workdir / "study.yaml").write_text(yaml.safe_dump(config))
    results = workdir / "results" / "mnist-sample"
    snakemake(workdir, "results/mnist-sample/data.h5", "--cores", "2", "--configfile", "study.yaml")
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for cores in times:
            # Missing outputs: the study's trainings, aggregate and report all run again.
            shutil.rmtree(results / "softmax", ignore_errors=True)
            shutil.rmtree(results / "sweep", ignore_errors=True)
            (results / "report.html").unlink(missing_ok=True)
            times[cores].append(
                snakemake(workdir, "--cores", str(cores), "--configfile", "study.yaml")
            )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each softmax run")
    parser.add_argument("--skip-parallel", action="store_true", help="only time the planning")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = copy_workflow(Path(tmp) / "workflow")
        for name, config in planning_configs().items():
            plan, cpu = planning_seconds(workdir, args.repeats, config)
            median_plan = statistics.median(plan)
            rows.append((f"plan {name}", f"{median_plan:.2f} s", "< 5 s", plan))
            rows.append(("  its CPU time", f"{statistics.median(cpu):.2f} s", "", cpu))
        if not args.skip_parallel:
            times = parallel_seconds(workdir, args.repeats, args.epochs)
            j1, j2 = (statistics.median(times[cores]) for cores in (1, 2))
            rows += [
                ("8-run softmax study, -j1", f"{j1:.1f} s", "", times[1]),
                ("8-run softmax study, -j2", f"{j2:.1f} s", "", times[2]),
                ("ratio -j2 / -j1", f"{j2 / j1:.2f}", "<= 0.65", []),
            ]

    load = os.getloadavg()[0]
    print(f"\nmedians of {args.repeats} runs; {cpu_name()}, load {load:.1f} (1-minute average)\n")
    print(f"| {'benchmark':<40} | {'median':>9} | {'target':>8} | all runs (s)")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 10}|{'-' * 20}")
    for name, median, target, runs in rows:
        every = ", ".join(f"{seconds:.1f}" for seconds in runs)
        print(f"| {name:<40} | {median:>9} | {target:>8} | {every}")


if __name__ == "__main__":
    main()
