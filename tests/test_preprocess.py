import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import REPO, synthetic_digits, write_idx_gz
from mnistflow import preprocess
from mnistflow.datasets import IDX_FILENAMES


@pytest.fixture
def raw(tmp_path):
    write_idx_gz(tmp_path, *synthetic_digits(400, seed=1), prefix="train")
    write_idx_gz(tmp_path, *synthetic_digits(100, seed=2), prefix="t10k")
    return {role: tmp_path / name for role, name in IDX_FILENAMES.items()}


def test_stratified_split_is_seeded_disjoint_and_balanced():
    labels = np.repeat(np.arange(10), 50)
    train, val = preprocess.stratified_split(labels, 100, seed=3)
    again_train, again_val = preprocess.stratified_split(labels, 100, seed=3)
    np.testing.assert_array_equal(val, again_val)
    assert len(val) == 100 and len(train) == 400
    assert not set(train) & set(val)
    assert np.bincount(labels[val]).tolist() == [10] * 10
    _, other_val = preprocess.stratified_split(labels, 100, seed=4)
    assert set(other_val) != set(val)


def test_stratified_split_keeps_uneven_class_proportions_as_scikit_learn_does():
    from sklearn.model_selection import train_test_split

    labels = np.random.default_rng(0).choice(10, size=6007, p=np.linspace(1, 3, 10) / 20)
    train, val = preprocess.stratified_split(labels, 500, seed=0)
    assert len(val) == 500 and len(train) == 5507 and len(np.union1d(train, val)) == 6007
    assert np.all(np.diff(val) > 0) and np.all(np.diff(train) > 0)
    _, reference = train_test_split(labels, test_size=500, random_state=0, stratify=labels)
    ours, theirs = np.bincount(labels[val], minlength=10), np.bincount(reference, minlength=10)
    assert np.abs(ours - theirs).max() <= 1  # the same shares, up to rounding


def test_validation_size_larger_than_training_set_is_a_clear_error():
    with pytest.raises(ValueError, match=r"split.validation_size=600 must be between 1 and 499"):
        preprocess.stratified_split(np.zeros(500), 600, seed=0)


def test_preprocess_writes_splits_and_provenance(raw, tmp_path):
    out = tmp_path / "out" / "data.h5"
    sizes = preprocess.preprocess(raw, out, dataset="synthetic", validation_size=50, seed=0)
    assert sizes == {"train": 350, "val": 50, "test": 100}
    x, y = preprocess.load_split(out, "val")
    assert x.shape == (50, 28, 28) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and y.dtype == np.uint8
    attrs = preprocess.read_attrs(out)
    assert attrs["validation_size"] == 50 and attrs["split_seed"] == 0
    assert attrs["normalisation"] == preprocess.NORMALISATION
    assert set(json.loads(attrs["source_md5"])) == set(IDX_FILENAMES.values())
    assert list(out.parent.iterdir()) == [out], "no temporary file left behind"


def test_a_wrong_file_leaves_no_output(raw, tmp_path):
    raw["train_images"], raw["train_labels"] = raw["train_labels"], raw["train_images"]
    out = tmp_path / "out" / "data.h5"
    with pytest.raises(ValueError, match=r"magic number 2049\), expected images \(2051\)"):
        preprocess.preprocess(raw, out, dataset="synthetic", validation_size=50, seed=0)
    assert not out.exists()


def test_preprocess_does_not_import_tensorflow(raw, tmp_path):
    code = (
        "import sys; from pathlib import Path; from mnistflow import preprocess; "
        "raw = {k: Path(v) for k, v in zip(sys.argv[1::2], sys.argv[2::2])}; "
        "preprocess.preprocess(raw, Path('d.h5'), dataset='s', validation_size=50, seed=0); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    args = [str(item) for pair in raw.items() for item in pair]
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow" / "scripts")}
    subprocess.run([sys.executable, "-c", code, *args], check=True, env=env, cwd=tmp_path)


def test_h5_file_layout(raw, tmp_path):
    out = tmp_path / "data.h5"
    preprocess.preprocess(raw, out, dataset="synthetic", validation_size=50, seed=0)
    with h5py.File(out) as h5:
        assert sorted(h5) == ["test", "train", "val"]
        assert sorted(h5["train"]) == ["images", "labels"]
