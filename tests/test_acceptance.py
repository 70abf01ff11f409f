"""Acceptance: the default configuration on the real MNIST reaches the accuracy floors.

Uses ../shared/data/mnist as a local mirror (as an offline cluster would use shared storage);
skipped with a reason where that folder is absent. The cnn is trained with two seeds (a
parameter study of its default setting, run through the workflow: one training per core,
side by side) and its worst seed must clear the floor: one lucky seed proves nothing on
another machine. About 5 minutes on 2 quiet CPU cores.
"""

import csv
import json

import pytest
import yaml

from conftest import snakemake

pytestmark = [pytest.mark.acceptance, pytest.mark.e2e]

# cnn: seeds 0-4 scored 99.42, 99.53, 99.52, 99.51, 99.45% (sd 0.05%) with the defaults of
# shifts of up to 1 pixel and label smoothing 0.05 (perf/seeds.py on a 2-core Intel Xeon,
# 2026-12-03; docs/benchmarks.md; with shifts of 2 and smoothing 0.1: 99.35-99.51%, sd 0.07%);
# TensorFlow's CPU kernels differ between machines (the issue saw 0.05% between two). The
# floor, 99.25%, sits 0.17% under the worst seed and 0.24% under their mean, which keeps it
# under the worst of the earlier defaults too: room for the next machine.
FLOORS = {"softmax": 0.925, "mlp": 0.975, "cnn": 0.9925}
# perf/seeds.py measures 0-4 (the same trainings). Two: a study's training takes one thread,
# so on two cores both train side by side; a third costs half as much cnn training again.
# The floor's margin comes from all five seeds.
CNN_SEEDS = [0, 1]


def test_default_models_reach_their_accuracy_floors_on_real_mnist(
    workflow_dir, require_shared_mnist
):
    config_path = workflow_dir / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    assert config["dataset"] == "mnist" and config["models"] == list(FLOORS)
    config["download"] = {"mirrors": [str(require_shared_mnist)], "default_mirrors": False}
    config["sweep"] = {"seeds": CNN_SEEDS, "families": {"cnn": {"settings": [{}]}}}
    config_path.write_text(yaml.safe_dump(config))

    snakemake(workflow_dir, timeout=2400)

    results = workflow_dir / "results" / "mnist"
    accuracies = {
        family: [
            json.loads((results / family / "default" / "metrics.json").read_text())["test_accuracy"]
        ]
        for family in ("softmax", "mlp")
    }
    with (results / "sweep" / "runs.csv").open() as runs:
        cnn = {int(row["seed"]): float(row["test_accuracy"]) for row in csv.DictReader(runs)}
    assert sorted(cnn) == CNN_SEEDS
    accuracies["cnn"] = list(cnn.values())
    print("test accuracy:", accuracies)
    for family, floor in FLOORS.items():
        worst = min(accuracies[family])
        assert worst >= floor, f"{family}: worst of {accuracies[family]} is {worst:.4f} < {floor}"
    evaluate_log = workflow_dir / "logs" / "mnist" / "softmax" / "default" / "evaluate.log"
    assert "Test accuracy:" in evaluate_log.read_text()
