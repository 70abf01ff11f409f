"""Training and evaluation on small synthetic data, in-process (no Snakemake)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, synthetic_digits, write_idx_gz
from mnistflow import preprocess
from mnistflow.datasets import IDX_FILENAMES

HP = {
    "softmax": {
        "epochs": 2,
        "batch_size": 64,
        "optimizer": "rmsprop",
        "learning_rate": 0.01,
        "schedule": "constant",
        "seed": 1,
    },
    "mlp": {
        "epochs": 2,
        "batch_size": 64,
        "optimizer": "adam",
        "learning_rate": 0.003,
        "schedule": "constant",
        "hidden_units": 16,
        "dropout": 0.1,
        "seed": 1,
    },
    "cnn": {
        "epochs": 2,
        "batch_size": 64,
        "optimizer": "adam",
        "learning_rate": 0.003,
        "schedule": "cosine",
        "filters": [4, 8, 8],
        "dropout": 0.1,
        "seed": 1,
    },
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data")
    write_idx_gz(tmp, *synthetic_digits(600, seed=1), prefix="train")
    write_idx_gz(tmp, *synthetic_digits(200, seed=2), prefix="t10k")
    raw = {role: tmp / name for role, name in IDX_FILENAMES.items()}
    preprocess.preprocess(raw, tmp / "data.h5", dataset="synthetic", validation_size=100, seed=0)
    return tmp / "data.h5"


def train(data, family, out, hp=None):
    import keras

    from mnistflow import training

    hp = hp or HP[family]
    # Seeded, as runtime.configure seeds a workflow's training. Unseeded, the initial weights
    # and dropout came from wherever earlier tests in the process had left Python's random
    # state and Keras' global seed generator: the cnn's validation accuracy here spreads over
    # 0.64-1.0 across seeds 0-29, and was 0.36 once in the full suite.
    keras.utils.set_random_seed(hp["seed"])
    lines = []
    rows = training.train(
        data,
        family,
        hp,
        param_hdf5=out / "param.hdf5",
        model_keras=out / "model.keras",
        history=out / "history.csv",
        predictions_npz=out / "predictions.npz",
        log=lines.append,
    )
    return rows, lines


@pytest.mark.parametrize("family", ["softmax", "mlp", "cnn"])
def test_train_writes_history_log_and_models(data, tmp_path, family):
    rows, lines = train(data, family, tmp_path)
    assert [row["epoch"] for row in rows] == [1, 2]
    with open(tmp_path / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    assert list(history[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
    assert float(history[-1]["val_accuracy"]) > 0.5, "synthetic digits are easy to learn"
    epoch_lines = [line for line in lines if line.startswith("Epoch ")]
    assert len(epoch_lines) == 2 and epoch_lines[0].startswith("Epoch 1/2 - ")
    assert not any(ch in "".join(lines) for ch in "\r\x08\x1b"), "no progress-bar control chars"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "history.csv",
        "model.keras",
        "param.hdf5",
        "predictions.npz",
    ]
    with np.load(tmp_path / "predictions.npz") as saved:
        probabilities = saved["probabilities"]
    assert probabilities.shape == (200, 10)  # the test images' class probabilities
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def test_fit_gets_the_data_as_backend_tensors_converted_once(data, tmp_path, monkeypatch):
    """On a GPU the training set then stays in its memory: no copy from the host per epoch.
    On TensorFlow each epoch's batches come as a tf.data pipeline over those tensors."""
    import keras

    fitted, converted = [], []
    fit, convert = keras.Model.fit, keras.ops.convert_to_tensor

    def recording_fit(self, x, y=None, **kwargs):
        data = [x] if y is None else [x, y]
        fitted.append(([type(d).__name__ for d in data], type(kwargs["validation_data"])))
        return fit(self, x, y, **kwargs)

    def recording_convert(x, *args, **kwargs):
        converted.append(getattr(x, "shape", None))
        return convert(x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    monkeypatch.setattr(keras.ops, "convert_to_tensor", recording_convert)
    train(data, "mlp", tmp_path, hp={**HP["mlp"], "epochs": 3})
    assert len(fitted) == 3  # one fit() per epoch
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for inputs, validation in fitted:
            assert len(inputs) == 1 and "Dataset" in inputs[0]
            assert issubclass(validation, tf.data.Dataset)
    else:
        assert all(keras.ops.is_tensor(d) for inputs, _ in fitted for d in inputs)
    assert (500, 28, 28) in converted and converted.count((500, 28, 28)) == 1


@pytest.mark.skipif(
    __import__("keras").backend.backend() != "tensorflow", reason="tf.data batches: TensorFlow"
)
def test_tf_data_batches_train_the_same_weights_as_tensors(data, tmp_path, monkeypatch):
    """The tf.data feed only saves Keras' per-call set-up: the weights are bit for bit those
    of fit() slicing the tensors itself (the last, partial batch included: 500 = 7x64 + 52)."""
    import keras

    from mnistflow import training

    def weights(name):
        (tmp_path / name).mkdir()  # train() seeds: the same initial weights, dropout and shifts
        train(data, "cnn", tmp_path / name, hp={**HP["cnn"], "ema_momentum": 0.9, "shift": 1})
        return keras.saving.load_model(tmp_path / name / "model.keras").get_weights()

    batched = weights("batched")
    plain_init = training.Feed.__init__

    def unbatched(self, *args, **kwargs):
        plain_init(self, *args, **kwargs)
        self.batched, self.validation_data = False, self.validation

    monkeypatch.setattr(training.Feed, "__init__", unbatched)
    tensors = weights("tensors")
    assert len(batched) == len(tensors) > 0
    for a, b in zip(batched, tensors, strict=True):
        np.testing.assert_array_equal(a, b)


def test_param_hdf5_loads_into_the_seeds_own_code(data, tmp_path):
    """The seed's estimate task: build the architecture itself, then load_weights('param.hdf5')."""
    import keras

    train(data, "softmax", tmp_path)
    trained = keras.models.load_model(tmp_path / "model.keras")
    seed_model = keras.Sequential()
    seed_model.add(keras.layers.InputLayer(shape=(784,)))
    seed_model.add(keras.layers.Dense(10, activation="softmax"))
    seed_model.compile(loss="categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    seed_model.load_weights(str(tmp_path / "param.hdf5"))
    x, _ = preprocess.load_split(data, "test")
    x = x.reshape(len(x), 784)
    np.testing.assert_allclose(seed_model.predict(x, verbose=0), trained.predict(x, verbose=0))


def test_mlp_param_hdf5_loads_into_the_seed_mlp(data, tmp_path):
    import keras

    train(data, "mlp", tmp_path)
    user = keras.Sequential(
        [
            keras.layers.Flatten(input_shape=(28, 28)),
            keras.layers.Dense(units=16, activation="relu"),
            keras.layers.Dense(units=10, activation="softmax"),
        ]
    )
    user.load_weights(str(tmp_path / "param.hdf5"))
    trained = keras.models.load_model(tmp_path / "model.keras")
    x, _ = preprocess.load_split(data, "test")
    np.testing.assert_allclose(user.predict(x, verbose=0), trained.predict(x, verbose=0), rtol=1e-5)


def test_evaluate_reports_seed_lines_metrics_and_figures(data, tmp_path):
    import keras

    from mnistflow import evaluation, models

    train(data, "mlp", tmp_path)
    lines = []
    result = evaluation.evaluate(
        data,
        tmp_path / "predictions.npz",
        "mlp",
        HP["mlp"],
        class_names=[str(i) for i in range(10)],
        run="mlp/default",
        metrics_json=tmp_path / "metrics.json",
        confusion_png=tmp_path / "cm.png",
        misclassified_png=tmp_path / "wrong.png",
        log=lines.append,
    )
    assert lines[0].startswith("Test loss: ") and lines[1].startswith("Test accuracy: ")
    assert float(lines[1].split(": ")[1]) == pytest.approx(result["test_accuracy"])
    # The scores from the train step's predictions are what the seed's estimate task gets:
    # param.hdf5 loaded into the architecture, then Keras' model.evaluate on the test set.
    estimate = models.compile_model(models.build_model("mlp", HP["mlp"]))
    estimate.load_weights(str(tmp_path / "param.hdf5"))
    x, y = preprocess.load_split(data, "test")
    loss, accuracy = estimate.evaluate(models.reshape_for(estimate, x), y, verbose=0)
    assert result["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert result["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert np.sum(saved["confusion_matrix"]) == 200
    correct = np.trace(saved["confusion_matrix"]) / 200
    assert saved["test_accuracy"] == pytest.approx(correct, abs=1e-6)
    assert set(saved["per_class"]) == {str(i) for i in range(10)}
    assert saved["software"]["keras"] == keras.__version__
    assert saved["software"]["keras_backend"] == keras.backend.backend()
    for png in ("cm.png", "wrong.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_class_scores_are_scikit_learns():
    from sklearn import metrics

    from mnistflow import evaluation

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    predicted = np.where(rng.random(300) < 0.7, labels, rng.integers(0, 4, 300))
    predicted[predicted == 3] = 2  # class 3 never predicted: precision undefined, scored 0
    names = ["a", "b", "c", "d"]
    confusion = evaluation.confusion_matrix(labels, predicted, 4)
    np.testing.assert_array_equal(confusion, metrics.confusion_matrix(labels, predicted))
    expected = metrics.classification_report(
        labels, predicted, target_names=names, output_dict=True, zero_division=0
    )
    for name, scores in evaluation.per_class_scores(confusion, names).items():
        assert scores == pytest.approx(expected[name]), name


def test_evaluate_refuses_predictions_of_another_test_set(data, tmp_path):
    from mnistflow import evaluation, predictions

    predictions.save(tmp_path / "p.npz", np.full((50, 10), 0.1), backend="x", training={})
    with pytest.raises(predictions.PredictionsError, match=r"\(50, 10\).*200 images.*rerun"):
        evaluation.evaluate(
            data,
            tmp_path / "p.npz",
            "mlp",
            HP["mlp"],
            class_names=[str(i) for i in range(10)],
            run="mlp/default",
            metrics_json=tmp_path / "metrics.json",
            confusion_png=tmp_path / "cm.png",
            misclassified_png=tmp_path / "wrong.png",
        )
    assert not (tmp_path / "metrics.json").exists()


def test_the_evaluate_step_imports_neither_keras_nor_its_backend():
    code = (
        "import sys; import mnistflow.evaluation; "
        "print(sorted({'keras', 'tensorflow', 'jax'} & set(sys.modules)))"
    )
    env = {"PYTHONPATH": str(REPO / "workflow" / "scripts"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


TRAIN_IN_SUBPROCESS = """
import sys
from pathlib import Path
from mnistflow import runtime
runtime.configure(2, seed=7)
from mnistflow import training
hp = {hp!r}
training.train({data!r}, "cnn", hp, param_hdf5=Path(sys.argv[1]) / "param.hdf5",
               model_keras=Path(sys.argv[1]) / "model.keras", history=Path(sys.argv[1]) / "h.csv",
               log=lambda line: None)
"""


def test_training_is_deterministic_for_a_seed_on_cpu(data, tmp_path):
    import h5py

    code = TRAIN_IN_SUBPROCESS.format(hp={**HP["cnn"], "seed": 7}, data=str(data))
    env_path = str(REPO / "workflow" / "scripts")
    weights = []
    for name in ("a", "b"):
        out = tmp_path / name
        out.mkdir()
        subprocess.run(
            [sys.executable, "-c", code, str(out)],
            check=True,
            env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        )
        with h5py.File(out / "param.hdf5") as h5:
            names = []
            h5.visit(names.append)
            weights.append([h5[n][()] for n in names if isinstance(h5[n], h5py.Dataset)])
    assert len(weights[0]) > 0
    for first, second in zip(*weights, strict=True):
        np.testing.assert_array_equal(first, second)


def test_weight_averaging_validates_and_saves_the_averaged_weights(data, tmp_path):
    """With ema_momentum, history's val metrics describe exactly the weights param.hdf5 holds."""
    import keras

    from mnistflow import models

    hp = {**HP["mlp"], "ema_momentum": 0.9}
    rows, _ = train(data, "mlp", tmp_path / "averaged", hp)
    plain = tmp_path / "plain"
    train(data, "mlp", plain, {**hp, "ema_momentum": 0})
    saved = models.compile_model(models.build_model("mlp", hp))
    saved.load_weights(str(tmp_path / "averaged" / "param.hdf5"))
    x, y = preprocess.load_split(data, "val")
    val_loss, val_accuracy = saved.evaluate(x, y, verbose=0)
    assert rows[-1]["val_loss"] == pytest.approx(val_loss, rel=1e-5)
    assert rows[-1]["val_accuracy"] == pytest.approx(val_accuracy)
    unaveraged = keras.models.load_model(plain / "model.keras").layers[-1].get_weights()[0]
    assert not np.allclose(saved.layers[-1].get_weights()[0], unaveraged)
