"""Acceptance: the default configuration on the real MNIST reaches the accuracy floors.

Uses ../shared/data/mnist as a local mirror (as an offline cluster would use shared storage);
skipped with a reason where that folder is absent. Takes a few minutes on 2 CPU cores.
"""

import json

import pytest
import yaml

from conftest import snakemake

pytestmark = [pytest.mark.acceptance, pytest.mark.e2e]

FLOORS = {"softmax": 0.925, "mlp": 0.975, "cnn": 0.992}


def test_default_models_reach_their_accuracy_floors_on_real_mnist(
    workflow_dir, require_shared_mnist
):
    config_path = workflow_dir / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    assert config["dataset"] == "mnist" and config["models"] == list(FLOORS)
    config["download"] = {"mirrors": [str(require_shared_mnist)], "default_mirrors": False}
    config_path.write_text(yaml.safe_dump(config))

    snakemake(workflow_dir, timeout=1800)

    results = workflow_dir / "results" / "mnist"
    accuracies = {
        family: json.loads((results / family / "default" / "metrics.json").read_text())[
            "test_accuracy"
        ]
        for family in FLOORS
    }
    print("test accuracy:", accuracies)
    for family, floor in FLOORS.items():
        assert accuracies[family] >= floor, f"{family}: {accuracies[family]:.4f} < {floor}"
    evaluate_log = workflow_dir / "logs" / "mnist" / "softmax" / "default" / "evaluate.log"
    assert "Test accuracy:" in evaluate_log.read_text()
