"""The benchmarks (perf/) run from a checkout without the tests: nothing in perf/ imports from
tests/, and perf's scratch copy of the workflow holds what the tests' copy holds."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

import conftest
from conftest import REPO, synthetic_digits, write_idx_gz
from mnistflow import preprocess
from mnistflow.datasets import IDX_FILENAMES

PERF = REPO / "perf"
TEST_MODULES = {path.stem for path in (REPO / "tests").rglob("*.py")}


def test_no_benchmark_imports_from_the_tests():
    for path in sorted(PERF.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
        }
        assert not imported & (TEST_MODULES | {"tests"}), f"{path.name} imports from tests/"
        assert '"tests"' not in path.read_text(), f"{path.name} puts tests/ on its path"


def test_the_benchmarks_copy_the_workflow_as_the_tests_do(tmp_path):
    """In a process of its own, as `python perf/run.py` runs: perf/ first on the path.

    One copy_workflow (perf/workflow_copy.py) serves both, and works without the tests."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import run; "
        "print(run.copy_workflow.__code__.co_filename); "
        "run.copy_workflow(__import__('pathlib').Path(sys.argv[2]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(PERF), str(tmp_path / "copy")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == conftest.copy_workflow.__code__.co_filename
    assert result.stdout.strip() == str(PERF / "workflow_copy.py")
    copied = sorted(p.relative_to(tmp_path / "copy") for p in (tmp_path / "copy").rglob("*"))
    reference = conftest.copy_workflow(tmp_path / "reference")
    assert copied == sorted(p.relative_to(reference) for p in reference.rglob("*"))
    assert (tmp_path / "copy" / "workflow" / "Snakefile").is_file()


# perf/run.py's pipeline_fit, as its cnn rows and perf/first_epoch.py run it: the cnn through
# mnistflow.training.train, tested after every epoch; then the same run without the tests.
PIPELINE_FIT = """
import json, sys
from pathlib import Path
perf, scripts, data, out, hp = sys.argv[1:]
sys.path[:0] = [perf, scripts]
from mnistflow import runtime
runtime.configure(1, seed=0)
import keras
import run
from mnistflow import training
data, out, hp = Path(data), Path(out), json.loads(hp)
rows = run.pipeline_fit(data, hp, out / "tested", raw=True)
first = run.pipeline_fit(data, hp, out / "first", until=1)
keras.backend.clear_session(free_memory=False)
keras.utils.set_random_seed(hp["seed"])  # as the train step's runtime.configure does
plain = out / "plain"
plain.mkdir()
training.train(data, "cnn", hp, param_hdf5=plain / "param.hdf5",
               model_keras=plain / "model.keras", history=plain / "history.csv")
print(json.dumps({"rows": rows, "first": first}))
"""

CNN_HP = {
    "epochs": 2,
    "batch_size": 64,
    "optimizer": "adam",
    "learning_rate": 0.01,
    "schedule": "cosine",
    "warmup_epochs": 0.3,
    "ema_momentum": 0.9,
    "label_smoothing": 0.1,
    "beta_2": 0.99,
    "filters": [4, 8, 8],
    "dropout": 0.1,
    "shift": 1,
    "seed": 3,
}


def _weights(path):
    found = {}
    with h5py.File(path) as h5:
        h5.visititems(
            lambda name, item: (
                found.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
            )
        )
    return found


@pytest.mark.slow  # 81 s at load 10 on the 2-core Intel Xeon: three short trainings
def test_the_benchmarks_cnn_trains_as_the_pipelines_train_step_and_tests_every_epoch(tmp_path):
    """The cnn's time to 99% (perf/run.py) and first-epoch accuracy (perf/first_epoch.py)
    come from the pipeline's own training: testing after each epoch changes no weight; the
    test accuracy is that of the averaged weights, which the run saves; a run stopped after
    its first epoch is the full run's first epoch."""
    import keras

    write_idx_gz(tmp_path, *synthetic_digits(600, seed=1), prefix="train")
    write_idx_gz(tmp_path, *synthetic_digits(300, seed=2), prefix="t10k")
    raw = {role: tmp_path / name for role, name in IDX_FILENAMES.items()}
    data = tmp_path / "data.h5"
    preprocess.preprocess(raw, data, dataset="synthetic", validation_size=100, seed=0)
    scripts = REPO / "workflow" / "scripts"
    args = [str(PERF), str(scripts), str(data), str(tmp_path), json.dumps(CNN_HP)]
    result = subprocess.run(
        [sys.executable, "-c", PIPELINE_FIT, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    rows, first = found["rows"], found["first"]
    assert [row["epoch"] for row in rows] == [1, 2] and all(row["seconds"] > 0 for row in rows)
    tested = _weights(tmp_path / "tested" / "param.hdf5")
    plain = _weights(tmp_path / "plain" / "param.hdf5")
    assert tested.keys() == plain.keys() and len(tested) > 0
    for name, values in plain.items():
        np.testing.assert_array_equal(tested[name], values, err_msg=name)
    # The last row: the saved model's test accuracy (the averages, which the run ends with).
    test_x, test_y = preprocess.load_split(data, "test")
    saved = keras.saving.load_model(tmp_path / "plain" / "model.keras")
    predicted = np.argmax(saved.predict(test_x[..., None], verbose=0), axis=1)
    assert rows[-1]["accuracy"] == pytest.approx(np.mean(predicted == test_y), abs=1e-9)
    assert rows[-1]["raw accuracy"] == rows[-1]["accuracy"]
    assert 0.2 < rows[0]["accuracy"] <= 1  # learnable digits: better than chance (0.1)
    assert [row["epoch"] for row in first] == [1]
    assert first[0]["accuracy"] == rows[0]["accuracy"]  # the 2-epoch schedule's first epoch


def test_seed_studies_read_their_settings_as_yaml(monkeypatch):
    """perf/seeds.py's and perf/first_epoch.py's shared `--seeds` and `--set KEY=VALUE`."""
    monkeypatch.syspath_prepend(str(PERF))
    import run

    args = run.seed_study_parser("doc").parse_args(
        ["--seeds", "3", "4", "--set", "shift=0", "filters=[24, 32, 48]"]
    )
    defaults = {"shift": 2, "epochs": 8}
    assert args.seeds == [3, 4]
    changed = run.with_settings(defaults, args.set)
    assert changed == {"shift": 0, "epochs": 8, "filters": [24, 32, 48]}
    assert defaults == {"shift": 2, "epochs": 8}  # the defaults are left as they were
