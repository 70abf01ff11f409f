import csv
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import REPO, copy_workflow, snakemake
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


def test_report_keeps_curves_and_metrics_table_for_snakemakes_report(tmp_path):
    runs = [fake_run(tmp_path / "a", "softmax/default", 0.92)]
    curves, table = tmp_path / "curves.png", tmp_path / "metrics.csv"
    report.build_report(
        runs, {}, tmp_path / "r.html", title="t", curves_png=curves, metrics_table=table
    )
    assert curves.read_bytes().startswith(b"\x89PNG")
    rows = list(csv.DictReader(table.open()))
    assert rows == [
        {
            "run": "softmax/default",
            "family": "softmax",
            "epochs": "3",
            "val accuracy": "0.8800",
            "test accuracy": "0.9200",
            "test loss": "0.3000",
            "train s": "4.5",
        }
    ]


def _captured_figure(monkeypatch, draw):
    """The matplotlib figure a plots function draws, before it is saved and closed."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, dest: figures.append(fig))
    draw()
    return figures[0]


def test_training_curves_tick_whole_epochs_only(monkeypatch, tmp_path):
    rows = [
        {"epoch": e, "loss": 1 / e, "accuracy": 0.5, "val_loss": 1, "val_accuracy": 0.5}
        for e in (1, 2, 3)
    ]
    fig = _captured_figure(monkeypatch, lambda: plots.training_curves({"r": rows}, "x.png"))
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks == [1, 2, 3], ticks


def test_confusion_matrix_numbers_are_readable(monkeypatch):
    matrix = np.diag([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    matrix[4, 9] = 7
    fig = _captured_figure(
        monkeypatch,
        lambda: plots.confusion_matrix(matrix, [str(i) for i in range(10)], "t", "x.png"),
    )
    texts = {t.get_text(): t.get_fontsize() for t in fig.axes[0].texts}
    assert set(texts) == {str(n) for n in np.diag(matrix)} | {"7"}  # empty cells blank
    assert min(texts.values()) >= 9


@pytest.mark.e2e
def test_dot_test_run_and_snakemakes_report_stand_on_their_own(tmp_path):
    """What the workflow catalog's CI runs: the .test configuration, then `snakemake --report`."""
    workdir = copy_workflow(tmp_path / "workflow-copy")
    shutil.copytree(REPO / ".test", workdir / ".test")
    snakemake(workdir, "--directory", ".test")
    results = workdir / ".test" / "results" / "mnist-sample"
    assert len(list(results.glob("*/default/metrics.json"))) == 3
    assert (results / "metrics.csv").read_text().count("\n") == 4  # header + 3 runs

    snakemake(workdir, "--directory", ".test", "--report", str(tmp_path / "report.zip"))
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
        page = archive.read("report/report.html").decode()  # Snakemake's page; items in data/
    for item in ("curves.png", "metrics.csv", "report.html", "confusion_matrix.png"):
        assert any(n.endswith(item) for n in names), (item, names)
    assert "Keras classifiers of handwritten digits" in page  # workflow/report/workflow.rst
    assert "mnist-sample" in page  # the description's template was filled in
    for caption in ("Loss (left) and accuracy (right)", "One row per run", "row = true class"):
        assert caption in page, caption
