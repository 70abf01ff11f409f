"""A parameter study through the real snakemake CLI on the bundled sample (about a minute).

What reruns after the study changes is read from `snakemake -n`'s job table, not from timing.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml

from conftest import snakemake

pytestmark = pytest.mark.e2e

RESULTS = Path("results") / "mnist-sample"
STUDY_2X2 = {
    "dataset": "mnist-sample",
    "models": ["softmax"],
    "hyperparameters": {"softmax": {"epochs": 1}},
    "sweep": {
        "seeds": [0, 1],
        "families": {
            "softmax": {"grid": {"learning_rate": [0.01, 0.1], "batch_size": [64, 128]}},
        },
    },
}


def write_study(workdir: Path, grid: dict, seeds=(0, 1), sweep_first: bool = False) -> str:
    """The study as a config file; ``sweep_first`` puts its keys in another order."""
    study = {**STUDY_2X2, "sweep": {"seeds": list(seeds), "families": {"softmax": {"grid": grid}}}}
    if sweep_first:
        study = {"sweep": {"families": study["sweep"]["families"], "seeds": list(seeds)}} | {
            key: value for key, value in study.items() if key != "sweep"
        }
    (workdir / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return "study.yaml"


def planned_jobs(workdir: Path, configfile: str) -> dict[str, int]:
    """Jobs `snakemake -n` would run, by rule (empty when there is nothing to do)."""
    out = snakemake(workdir, "-n", "--configfile", configfile).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    jobs = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}
    jobs.pop("default", None)  # the top-level Snakefile's target rule, not a job of the study
    jobs.pop("all", None)  # likewise workflow/Snakefile's
    return jobs


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_study_runs_then_changes_rerun_only_what_they_must(workflow_dir):
    # 2 settings x 2 seeds: the fewest runs with a winner over seeds, a value to remove and
    # keys, values and seeds to reorder.
    grid = {"learning_rate": [0.01, 0.1], "batch_size": [64]}
    config = write_study(workflow_dir, grid)
    snakemake(workflow_dir, "--configfile", config)

    run_dirs = sorted(p.name for p in (workflow_dir / RESULTS / "softmax").iterdir())
    assert len(run_dirs) == 4 and "batch_size=64+learning_rate=0.1+seed=1" in run_dirs
    # One job per run (rule train_study) trained and evaluated it, each step in its own log.
    for run in run_dirs:
        logs = workflow_dir / "logs" / "mnist-sample" / "softmax" / run
        assert "Epoch 1/1" in (logs / "train.log").read_text()
        assert re.search(r"^Test accuracy: 0\.\d+$", (logs / "evaluate.log").read_text(), re.M)
    settings = read_csv(workflow_dir / RESULTS / "sweep" / "settings.csv")
    assert len(settings) == 2 and {row["seeds"] for row in settings} == {"2"}
    assert [row["winner"] for row in settings] == ["yes", ""]
    means = [float(row["val_accuracy_mean"]) for row in settings]
    assert means == sorted(means, reverse=True)
    assert len(read_csv(workflow_dir / RESULTS / "sweep" / "runs.csv")) == 4
    page = (workflow_dir / RESULTS / "report.html").read_text()
    assert "<h2>Parameter study</h2>" in page and settings[0]["setting"] in page

    # The same study with keys, values and seeds reordered: nothing to do.
    reordered = {"batch_size": [64], "learning_rate": [0.1, 0.01]}
    config = write_study(workflow_dir, reordered, seeds=(1, 0), sweep_first=True)
    assert planned_jobs(workflow_dir, config) == {}

    # A new grid value: only its runs (2 learning rates x 2 seeds), then aggregate and report.
    bigger = {**grid, "batch_size": [64, 128]}
    assert planned_jobs(workflow_dir, write_study(workflow_dir, bigger)) == {
        "train_study": 4,  # one job per run: its training and its evaluation
        "aggregate_sweep": 1,
        "report": 1,
    }

    # A removed value: no training, the aggregate and the report drop its runs.
    smaller = {**grid, "learning_rate": [0.01]}
    config = write_study(workflow_dir, smaller)
    assert planned_jobs(workflow_dir, config) == {"aggregate_sweep": 1, "report": 1}
    snakemake(workflow_dir, "--configfile", config)
    settings = read_csv(workflow_dir / RESULTS / "sweep" / "settings.csv")
    assert [row["setting"] for row in settings] == ["batch_size=64+learning_rate=0.01"]
    runs = read_csv(workflow_dir / RESULTS / "sweep" / "runs.csv")
    removed = re.compile(r"learning_rate=0\.1(?!\d)")
    assert len(runs) == 2 and not any(removed.search(row["run"]) for row in runs)
    page = (workflow_dir / RESULTS / "report.html").read_text()
    assert "learning_rate=0.01" in page and not removed.search(page)


def test_a_random_search_plans_one_job_per_run_and_none_for_the_runs_outside(workflow_dir):
    study = {
        **STUDY_2X2,
        "models": ["softmax", "mlp"],  # mlp's default run stays a train and an evaluate job
        "sweep": {
            "seeds": [0],
            "families": {
                "softmax": {
                    "random": {
                        "samples": 50,
                        "distributions": {"learning_rate": {"loguniform": [0.001, 0.3]}},
                    }
                }
            },
        },
    }
    (workflow_dir / "search.yaml").write_text(yaml.safe_dump(study))
    jobs = planned_jobs(workflow_dir, "search.yaml")
    assert {rule: jobs.get(rule) for rule in ("train_study", "train", "evaluate")} == {
        "train_study": 50,
        "train": 1,
        "evaluate": 1,
    }, jobs
    # With --sdm apptainer a study run stays a train and an evaluate job: the image has no
    # matplotlib for the evaluation's figures (workflow/rules/sweep.smk).
    out = snakemake(workflow_dir, "-n", "--configfile", "search.yaml", "--sdm", "apptainer").stdout
    assert "train_study" not in out and re.search(r"^train\s+51$", out, re.M), out[-3000:]
    assert re.search(r"^evaluate\s+51$", out, re.M)
