"""The SavedModel export loads in a fresh interpreter without our package, predicts as the model."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

LOAD = """
import json, sys
import numpy as np
import tensorflow as tf
assert not any("mnistflow" in p or "workflow/scripts" in p for p in sys.path), sys.path
loaded = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
out = {
    "float": loaded.serve(tf.constant(images.astype(np.float32) / np.float32(255))).numpy(),
    "uint8": loaded.serve_uint8(tf.constant(images)).numpy(),
    "default": loaded.signatures["serving_default"](
        images=tf.constant(images.astype(np.float32) / np.float32(255)))["output_0"].numpy(),
}
np.savez(sys.argv[3], **out)
"""


def without_our_package(cwd, code: str, *paths) -> None:
    """Run code in a fresh interpreter in cwd, with the paths as its arguments.

    -I: isolated, so neither PYTHONPATH nor the tests' sys.path reach our package.
    """
    subprocess.run([sys.executable, "-I", "-c", code, *map(str, paths)], check=True, cwd=cwd)


@pytest.mark.parametrize("family", ["softmax", "cnn"])
def test_saved_model_matches_keras_in_fresh_interpreter(tmp_path, family):
    import keras

    from mnistflow import export, models

    hp = {"filters": [4, 4, 4], "dropout": 0.1, "shift": 2}
    model = models.portable(models.build_model(family, hp))
    model.save(tmp_path / "model.keras")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    floats = images.astype(np.float32) / np.float32(255)
    expected = keras.ops.convert_to_numpy(
        model.predict(models.reshape_for(model, floats), verbose=0)
    )

    export.export_saved_model(tmp_path / "model.keras", tmp_path / "saved_model")
    assert (tmp_path / "saved_model" / "saved_model.pb").is_file()
    assert not (tmp_path / "saved_model.tmp").exists()

    without_our_package(
        tmp_path, LOAD, tmp_path / "saved_model", tmp_path / "images.npy", tmp_path / "out.npz"
    )
    with np.load(tmp_path / "out.npz") as out:
        for name in ("float", "uint8", "default"):
            np.testing.assert_allclose(out[name], expected, rtol=0, atol=1e-6, err_msg=name)


LOAD_TEST_SET = """
import sys
import numpy as np
import tensorflow as tf
assert not any("mnistflow" in p or "workflow/scripts" in p for p in sys.path), sys.path
loaded = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
np.save(sys.argv[3], loaded.serve(tf.constant(images)).numpy())
"""


def test_export_rule_matches_predictions_npz(workflow_dir, tmp_path):
    """`snakemake <run>/saved_model` exports a trained run; on the test set it predicts as
    predictions.npz (the train step's own predictions) to float32 round-off."""
    import yaml

    from conftest import snakemake
    from mnistflow import preprocess

    config = {
        "dataset": "mnist-sample",
        "models": ["softmax"],
        "hyperparameters": {"softmax": {"epochs": 1}},
        "resources": {"train": {"threads": 1}, "evaluate": {"threads": 1}},
    }
    (workflow_dir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run = workflow_dir / "results" / "mnist-sample" / "softmax" / "default"
    snakemake(workflow_dir, str(run.relative_to(workflow_dir) / "saved_model"))
    images, _ = preprocess.load_split(workflow_dir / "results" / "mnist-sample" / "data.h5", "test")
    np.save(tmp_path / "test.npy", images)
    without_our_package(
        tmp_path, LOAD_TEST_SET, run / "saved_model", tmp_path / "test.npy", tmp_path / "out.npy"
    )
    with np.load(run / "predictions.npz") as saved:
        expected = saved["probabilities"]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=0, atol=1e-6)
    assert "Exported" in (workflow_dir / "logs/mnist-sample/softmax/default/export.log").read_text()
