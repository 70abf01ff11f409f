import json
import subprocess
import sys

import numpy as np

from conftest import REPO
from mnistflow import plots, report, training


def fake_run(directory, name, accuracy):
    directory.mkdir(parents=True)
    rows = [
        {
            "epoch": e,
            "loss": 1 / e,
            "accuracy": accuracy - 0.1 / e,
            "val_loss": 1.1 / e,
            "val_accuracy": accuracy - 0.12 / e,
            "seconds": 1.5,
        }
        for e in (1, 2, 3)
    ]
    (directory / "history.csv").write_text(training.history_csv(rows))
    classes = [str(i) for i in range(10)]
    per_class = {
        c: {"precision": 0.9, "recall": 0.8, "f1-score": 0.85, "support": 50} for c in classes
    }
    (directory / "metrics.json").write_text(
        json.dumps(
            {
                "run": name,
                "family": name.split("/")[0],
                "hyperparameters": {"epochs": 3},
                "test_loss": 0.3,
                "test_accuracy": accuracy,
                "per_class": per_class,
                "confusion_matrix": np.eye(10, dtype=int).tolist(),
                "software": {"keras": "3.x"},
            }
        )
    )
    plots.confusion_matrix(np.eye(10, dtype=int) * 5, classes, name, directory / "cm.png")
    images = np.zeros((3, 28, 28))
    plots.misclassified(images, [1, 2, 3], [7, 7, 7], classes, name, directory / "wrong.png")
    return {
        "run": name,
        "metrics": directory / "metrics.json",
        "history": directory / "history.csv",
        "confusion_png": directory / "cm.png",
        "misclassified_png": directory / "wrong.png",
    }


def test_report_is_one_self_contained_page_comparing_runs(tmp_path):
    runs = [
        fake_run(tmp_path / "a", "softmax/default", 0.92),
        fake_run(tmp_path / "b", "cnn/default", 0.99),
    ]
    out = tmp_path / "report.html"
    report.build_report(runs, {"dataset": "mnist", "seed": 0}, out, title="Test report")
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("data:image/png;base64,") == 5  # curves + 2 x (confusion, misclassified)
    assert "<td>softmax/default</td>" in html and "<td>0.9900</td>" in html
    assert "dataset: mnist" in html and "<td>keras</td><td>3.x</td>" in html
    assert 'src="http' not in html and "<link" not in html, "nothing loaded from elsewhere"


def test_report_module_does_not_import_tensorflow():
    code = "import sys; import mnistflow.report; assert 'tensorflow' not in sys.modules"
    env = {"PYTHONPATH": str(REPO / "workflow" / "scripts"), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
