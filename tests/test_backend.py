"""The `compute` settings: Keras backend selection, XLA, mixed precision (the GPU path on a CPU).

Each case runs in a fresh Python process: Keras reads its backend once, when first imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import synthetic_digits, write_idx_gz
from mnistflow import preprocess, runtime, settings
from mnistflow.datasets import IDX_FILENAMES

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
SCHEMA = SCRIPTS.parent / "schemas" / "config.schema.yaml"


def python(code: str, *argv: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``code`` with arguments ``argv`` in a fresh interpreter that imports mnistflow."""
    prelude = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r})\n"
    return subprocess.run(
        [sys.executable, *flags, "-c", prelude + textwrap.dedent(code), *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )


def last_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_unknown_backend_names_the_allowed_ones():
    with pytest.raises(runtime.BackendError, match="allowed values: tensorflow, jax"):
        runtime.select_backend("torch")


def test_schema_rejects_an_unknown_backend_and_fills_the_defaults():
    schema = yaml.safe_load(SCHEMA.read_text())
    errors = settings.config_errors({"compute": {"backend": "torch"}}, schema)
    assert errors == [
        "  compute.backend: 'torch' is not one of ['tensorflow', 'jax'] "
        "(allowed values: tensorflow, jax)"
    ]
    config = yaml.safe_load((SCHEMA.parents[1].parent / "config" / "config.yaml").read_text())
    assert settings.config_errors(config, schema) == []
    assert set(config["compute"]) == set(schema["properties"]["compute"]["properties"])


def test_a_missing_backend_package_says_what_to_install():
    # -S: no site-packages, so neither jax nor tensorflow is installed for this interpreter.
    result = python("from mnistflow import runtime; runtime.select_backend('jax')", flags=("-S",))
    assert result.returncode != 0
    assert "compute.backend is 'jax', but the 'jax' package is not installed: pip install jax" in (
        result.stderr
    )


def test_the_backend_is_chosen_before_keras_is_imported():
    result = python(
        """
        import json
        from mnistflow import runtime
        runtime.configure(1, seed=0, backend="jax")
        import keras
        try:
            runtime.select_backend("tensorflow")
            late = "no error"
        except runtime.BackendError as error:
            late = str(error)
        print(json.dumps([keras.backend.backend(), late]))
        """
    )
    backend, late = last_json(result)
    assert backend == "jax"
    assert "imported with the 'jax' backend before 'tensorflow' was selected" in late


# Train a small cnn on learnable fake digits, save param.hdf5, print a hash of the weights.
TRAIN = """
    import hashlib, json, sys
    from mnistflow import runtime
    backend, precision, jit, out = sys.argv[1:5]
    jit = {"auto": "auto", "true": True, "false": False}[jit]
    runtime.configure(2, seed=3, backend=backend, precision=precision, jit_compile=jit)
    import keras, numpy as np
    from mnistflow import models, training
    digits = np.load(sys.argv[5])
    images, labels = digits["images"], digits["labels"]
    hp = {"filters": [4, 8, 8], "dropout": 0.3, "epochs": 2, "batch_size": 64,
          "optimizer": "adam", "learning_rate": 0.01, "schedule": "cosine", "ema_momentum": 0.9}
    model = models.compile_model(models.build_model("cnn", hp), hp, steps_per_epoch=8)
    x = models.reshape_for(model, images / np.float32(255))
    model.fit(x, labels, batch_size=64, epochs=2, verbose=0)
    training.save_param_hdf5(model, out)
    digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
    print(json.dumps({
        "backend": keras.backend.backend(), "jit": model.jit_compile, "digest": digest,
        "dtypes": sorted({w.dtype.name for w in model.get_weights()}),
        "compute_dtype": model.layers[0].compute_dtype,
        "output_dtype": model.layers[-1].compute_dtype,
        "accuracy": float(model.evaluate(x, labels, verbose=0)[1]),
    }))
"""

# The seeds' estimate code: tf.keras, the architecture built by hand, load_weights.
ESTIMATE = """
    import json, sys
    import numpy as np
    import tensorflow as tf
    layers = tf.keras.layers
    digits = np.load(sys.argv[2])
    images, labels = digits["images"], digits["labels"]
    def block(filters, size, strides=1):
        return [layers.Conv2D(filters, size, strides=strides, padding="same", use_bias=False),
                layers.BatchNormalization(), layers.ReLU()]
    model = tf.keras.Sequential([tf.keras.Input(shape=(28, 28, 1)), *block(4, 5, 2),
        *block(8, 3, 2), *block(8, 3), layers.Flatten(), layers.Dropout(0.3),
        layers.Dense(10, activation="softmax")])
    model.load_weights(sys.argv[1])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    score = model.evaluate(images[..., None] / np.float32(255), labels, verbose=0)
    print(json.dumps({"accuracy": float(score[1])}))
"""


def digits(tmp_path) -> Path:
    path = tmp_path / "digits.npz"
    if not path.exists():
        images, labels = synthetic_digits(512)
        np.savez(path, images=images, labels=labels)
    return path


def train(tmp_path, name, backend="jax", precision="float32", jit="auto"):
    out = tmp_path / f"{name}.hdf5"
    args = [backend, precision, jit, str(out), str(digits(tmp_path))]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(SCRIPTS)!r})\n" + textwrap.dedent(TRAIN),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return last_json(result), out


def estimate(param: Path) -> float:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(ESTIMATE),
            str(param),
            str(param.parent / "digits.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return last_json(result)["accuracy"]


# The pipeline's own training step under JAX, with weight averaging; prints a weights digest.
PIPELINE_TRAIN = """
    import hashlib, json, sys
    import h5py
    from mnistflow import runtime
    runtime.configure(2, seed=1, backend="jax")
    from mnistflow import training
    data, out = sys.argv[1:3]
    hp = {"filters": [4, 8, 8], "dropout": 0.1, "epochs": 3, "batch_size": 64, "seed": 1,
          "optimizer": "adam", "learning_rate": 0.01, "schedule": "cosine", "ema_momentum": 0.9}
    training.train(data, "cnn", hp, param_hdf5=out + ".hdf5", model_keras=out + ".keras",
                   history=out + ".csv")
    digest = hashlib.sha256()
    with h5py.File(out + ".hdf5") as h5:
        h5.visititems(lambda name, item: digest.update(item[()].tobytes())
                      if isinstance(item, h5py.Dataset) else None)
    print(json.dumps(digest.hexdigest()))
"""


def test_jax_training_repeats_bit_for_bit_and_its_weights_load_into_tf_keras(tmp_path):
    """The pipeline's train step, weight averaging included, on JAX."""
    write_idx_gz(tmp_path, *synthetic_digits(600, seed=1), prefix="train")
    write_idx_gz(tmp_path, *synthetic_digits(512, seed=2), prefix="t10k")
    raw = {role: tmp_path / name for role, name in IDX_FILENAMES.items()}
    data = tmp_path / "data.h5"
    preprocess.preprocess(raw, data, dataset="synthetic", validation_size=100, seed=0)
    images, labels = preprocess.load_split(data, "test")
    np.savez(tmp_path / "digits.npz", images=images * 255, labels=labels)
    digests = [
        last_json(python(PIPELINE_TRAIN, str(data), str(tmp_path / run)))
        for run in ("first", "second")
    ]
    assert digests[0] == digests[1]
    # The seeds' own tf.keras code loads the weights and they have learned (chance: 0.1).
    assert estimate(tmp_path / "first.hdf5") > 0.5


def test_mixed_precision_computes_in_low_precision_and_saves_float32(tmp_path):
    # bfloat16 runs on CPUs; float16 is the same code path on NVIDIA GPUs.
    result, param = train(tmp_path, "mixed", backend="tensorflow", precision="mixed_bfloat16")
    assert result["compute_dtype"] == "bfloat16"
    assert result["output_dtype"] == "float32"  # the softmax stays float32
    assert result["dtypes"] == ["float32"]  # weights, hence param.hdf5
    assert result["jit"] is False  # TensorFlow with op determinism: no XLA
    assert result["accuracy"] > 0.5
    assert estimate(param) == pytest.approx(result["accuracy"], abs=0.02)


def test_jit_compile_false_is_passed_to_keras(tmp_path):
    result, _ = train(tmp_path, "eager", jit="false")
    assert result["jit"] is False
