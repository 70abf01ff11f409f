import warnings

import h5py
import keras
import numpy as np
import pytest

from mnistflow import models, training

HP = {
    "hidden_units": 128,
    "dropout": 0.0,
    "filters": [24, 48, 64],
    "learning_rate": 0.01,
    "epochs": 4,
    "optimizer": "adam",
    "schedule": "constant",
}


def test_softmax_is_the_seeds_dense_layer_on_784_inputs():
    model = models.build_model("softmax", HP)
    assert model.input_shape == (None, 784) and model.output_shape == (None, 10)
    assert model.count_params() == 784 * 10 + 10


def test_mlp_is_the_seeds_flatten_dense128_dense10():
    model = models.build_model("mlp", HP)
    assert model.input_shape == (None, 28, 28)
    assert model.count_params() == 100_480 + 1_290  # as counted in the seed (004)


def test_cnn_takes_images_with_a_channel_axis():
    model = models.build_model("cnn", HP)
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)


def test_unknown_family_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown model family 'vit', expected one of"):
        models.build_model("vit", HP)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = models.learning_rate({**HP, "schedule": "cosine"}, steps_per_epoch=10)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    rates = [float(schedule(step)) for step in (0, 4, 40)]  # 10% of 40 steps warm up
    assert rates[0] == pytest.approx(0.0) and rates[1] == pytest.approx(0.01)
    assert rates[2] == pytest.approx(0.0, abs=1e-6)
    assert models.learning_rate(HP, steps_per_epoch=10) == 0.01


def test_warmup_epochs_sets_the_warm_up_length_in_epochs():
    hp = {**HP, "schedule": "cosine", "epochs": 8, "warmup_epochs": 0.3}
    schedule = models.learning_rate(hp, steps_per_epoch=430)  # MNIST at batch size 128
    assert schedule.warmup_steps == 129 and schedule.decay_steps == 8 * 430 - 129
    assert float(schedule(129)) == pytest.approx(0.01)  # the peak, 30% into the first epoch
    assert float(schedule(64)) < 0.006  # still warming up half-way there
    # Without it: 10% of all steps (here 344, 80% of the first epoch); never over half the run.
    assert models.learning_rate({**hp, "warmup_epochs": None}, 430).warmup_steps == 344
    assert models.learning_rate({**hp, "warmup_epochs": 6}, 100).warmup_steps == 400


def test_label_smoothing_lowers_the_targets_of_the_true_class():
    probabilities = np.array([[0.7, 0.1, 0.2] + [0.0] * 7], np.float32) + 1e-7
    plain = models.loss({})
    assert plain == models.PLAIN_LOSS and models.loss(None) == plain
    smoothed = models.loss({"label_smoothing": 0.1})
    # targets: 0.91 for class 0, 0.01 for each of the other nine
    targets = np.full(10, 0.01)
    targets[0] = 0.91
    expected = -np.sum(targets * np.log(probabilities[0] / probabilities[0].sum()))
    assert float(smoothed(np.array([0]), probabilities)) == pytest.approx(expected, rel=1e-4)
    unsmoothed = keras.losses.SparseCategoricalCrossentropy()(np.array([0]), probabilities)
    assert float(models.SmoothedSparseCrossentropy(0.0)(np.array([0]), probabilities)) == (
        pytest.approx(float(unsmoothed), rel=1e-5)
    )


def test_beta_2_reaches_adam_and_is_refused_by_optimizers_without_one():
    model = models.compile_model(models.build_model("mlp", HP), {**HP, "beta_2": 0.99}, 10)
    assert model.optimizer.beta_2 == 0.99
    assert models.compile_model(models.build_model("mlp", HP), HP, 10).optimizer.beta_2 == 0.999
    with pytest.raises(ValueError, match="beta_2 is a hyperparameter of adam and adamw, not of"):
        models.compile_model(
            models.build_model("mlp", HP), {**HP, "optimizer": "sgd", "beta_2": 0.99}, 10
        )


def test_a_model_trained_with_label_smoothing_saves_keras_own_loss(tmp_path):
    """model.keras loads with plain Keras whatever the loss it trained with."""
    hp = {**HP, "label_smoothing": 0.1}
    for family in ("mlp", "cnn"):
        model = models.compile_model(models.build_model(family, hp), hp, 10)
        assert isinstance(model.loss, models.SmoothedSparseCrossentropy)
        images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
        model.fit(models.reshape_for(model, images[..., 0]), np.arange(4), verbose=0)
        bare = models.portable(model)
        assert bare.loss == models.PLAIN_LOSS
        bare.save(tmp_path / f"{family}.keras")
        assert b"smoothed" not in (tmp_path / f"{family}.keras").read_bytes()
        keras.saving.load_model(tmp_path / f"{family}.keras")


def test_reshape_for_matches_each_model_input():
    import numpy as np

    images = np.zeros((3, 28, 28), np.float32)
    for family, shape in (("softmax", (3, 784)), ("mlp", (3, 28, 28)), ("cnn", (3, 28, 28, 1))):
        assert models.reshape_for(models.build_model(family, HP), images).shape == shape


def test_ema_momentum_turns_weight_averaging_on_and_zero_turns_it_off():
    hp = {**HP, "ema_momentum": 0.99}
    averaged = models.compile_model(models.build_model("mlp", HP), hp, steps_per_epoch=430)
    assert averaged.optimizer.use_ema and averaged.optimizer.ema_momentum == pytest.approx(0.99)
    for hp in ({**HP, "ema_momentum": 0}, HP):
        assert not models.compile_model(models.build_model("mlp", HP), hp).optimizer.use_ema


def test_averaging_window_is_capped_at_a_tenth_of_short_runs():
    hp = {**HP, "ema_momentum": 0.99, "epochs": 5}
    assert models.averaging_momentum(hp, steps_per_epoch=430) == 0.99  # MNIST: as configured
    # The bundled sample: 12 steps per epoch, 60 in all, so a window of 6 steps.
    assert models.averaging_momentum(hp, steps_per_epoch=12) == pytest.approx(1 - 1 / 6)
    assert models.averaging_momentum(hp, steps_per_epoch=1) == 0.0  # too short to average
    assert models.averaging_momentum({**hp, "ema_momentum": 0}, steps_per_epoch=430) == 0


def test_shift_augments_only_while_training_and_adds_no_weights():
    plain = models.build_model("cnn", HP)
    shifted = models.build_model("cnn", {**HP, "shift": 2})
    assert [w.shape for w in shifted.weights] == [w.shape for w in plain.weights]
    images = np.zeros((64, 28, 28, 1), np.float32)
    images[:, 10:18, 10:18] = 1
    augment = shifted.layers[0]
    assert isinstance(augment, models.RandomShift)
    assert np.array_equal(np.asarray(augment(images, training=False)), images)
    moved = np.asarray(augment(images, training=True))
    assert moved.shape == images.shape and not np.array_equal(moved, images)
    # Each image is the square moved by whole pixels, at most 2 each way, nothing else.
    offsets = set()
    for image in moved[..., 0]:
        rows, cols = np.nonzero(image)
        assert image.sum() == 64 and set(np.unique(image)) == {0, 1}
        offsets.add((rows.min() - 10, cols.min() - 10))
        assert rows.max() - rows.min() == 7 and cols.max() - cols.min() == 7
    assert offsets <= {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    assert len(offsets) > 5  # random per image, not one shift for the batch


def test_shift_fills_with_zeros_at_the_edge():
    image = np.ones((1, 28, 28, 1), np.float32)
    layer = models.RandomShift(3)
    for _ in range(20):
        moved = np.asarray(layer(image, training=True))[0, :, :, 0]
        rows, cols = np.nonzero(moved)
        # a whole block of ones, cut where it left the frame; zeros where it came from outside
        assert moved.sum() == len(rows) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1) >= 25 * 25


def norms(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_cnn_batch_norms_take_the_configured_momentum_and_keep_it_when_saved():
    """batch_norm_momentum (config: equal to ema_momentum) reaches every batch norm, also in
    the model saved for plain Keras; without it, Keras' default."""
    assert [n.momentum for n in norms(models.build_model("cnn", HP))] == [0.99] * 3
    model = models.build_model("cnn", {**HP, "batch_norm_momentum": 0.98})
    assert [n.momentum for n in norms(model)] == [0.98] * 3
    assert [n.momentum for n in norms(models.portable(model))] == [0.98] * 3
    # The moving mean moves by (1 - momentum) of the batch's mean at a training step.
    images = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    first = norms(model)[0]
    before = np.asarray(first.moving_mean).copy()
    features = model.layers[0](images)  # the first convolution's output, before its norm
    first(features, training=True)
    expected = 0.98 * before + 0.02 * np.mean(np.asarray(features), axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(first.moving_mean), expected, rtol=1e-5, atol=1e-7)


def test_saved_model_leaves_the_augmentation_out_and_keeps_the_weights(tmp_path):
    """model.keras loads with plain Keras (no mnistflow import); param.hdf5 has the same layout."""
    model = models.compile_model(models.build_model("cnn", {**HP, "shift": 2}), HP, 10)
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    model.fit(images, np.arange(4), verbose=0)  # builds the optimizer's state
    _random_weights(model, seed=3)
    bare = models.portable(model)
    assert not any(isinstance(layer, models.RandomShift) for layer in bare.layers)
    norms = [layer for layer in bare.layers if "normalization" in layer.name]
    assert len(norms) == 3 and all(type(n) is keras.layers.BatchNormalization for n in norms)
    bare.save(tmp_path / "model.keras")
    text = (tmp_path / "model.keras").read_bytes()
    for ours in (b"RandomShift", b"Fused", b"mnistflow"):
        assert ours not in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Skipping variable loading for optimizer"
        loaded = keras.saving.load_model(tmp_path / "model.keras")
    for name in ("weights", "optimizer"):
        ours = model.weights if name == "weights" else model.optimizer.variables
        theirs = loaded.weights if name == "weights" else loaded.optimizer.variables
        assert len(ours) == len(theirs) > 0, name
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0)
    )
    assert models.portable(plain := models.build_model("mlp", HP)) is plain


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's kernel")
def test_fused_batch_normalization_trains_as_keras_own_to_round_off():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((64, 7, 7, 12), dtype=np.float32) * 3 + 1)
    weighting = tf.constant(rng.standard_normal(images.shape).astype(np.float32))
    ours, theirs = models.FusedBatchNormalization(), keras.layers.BatchNormalization()
    for layer in (ours, theirs):
        layer.build(images.shape)
    _random_weights(ours, seed=1)
    ours.moving_variance.assign(np.abs(ours.moving_variance.numpy()))
    theirs.set_weights(ours.get_weights())

    def step(layer):
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = layer(images, training=True)
            loss = tf.reduce_sum(outputs * weighting)
        return [outputs, *tape.gradient(loss, [images, layer.gamma.value, layer.beta.value])]

    for a, b in zip(step(ours), step(theirs), strict=True):  # outputs and gradients
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * np.abs(b).max())
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):  # moving statistics
        np.testing.assert_allclose(a, b, rtol=1e-6)
    theirs.set_weights(ours.get_weights())  # inference: Keras' own ops, exactly
    np.testing.assert_array_equal(ours(images, training=False), theirs(images, training=False))
    # ... and it is TensorFlow's fused kernel that trains (not Keras' ops, which would also pass)
    graph = tf.function(lambda x: ours(x, training=True)).get_concrete_function(images).graph
    assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}


def _random_weights(model, seed):
    """Distinct values in every weight, batch-norm statistics included (their order matters)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])


@pytest.mark.parametrize("family", ["softmax", "mlp", "cnn"])
def test_param_hdf5_loads_into_a_fresh_model_through_keras_public_loader(family, tmp_path):
    """evaluate's way and the seeds' estimate code: build the architecture, load_weights()."""
    saved = models.build_model(family, HP)
    _random_weights(saved, seed=1)
    training.save_param_hdf5(saved, tmp_path / "param.hdf5")
    loaded = models.build_model(family, HP)
    _random_weights(loaded, seed=2)
    loaded.load_weights(str(tmp_path / "param.hdf5"))
    for expected, actual in zip(saved.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(actual, expected)


def _h5_tree(path):
    """Every attribute and dataset of an HDF5 file, as plain Python values."""
    tree = {}

    def visit(name, item):
        for key, value in item.attrs.items():
            tree[f"{name}@{key}"] = np.asarray(value).tolist()
        if isinstance(item, h5py.Dataset):
            tree[name] = item[()].tolist()

    with h5py.File(path) as h5:
        visit("/", h5)
        h5.visititems(visit)
    return tree


def test_param_hdf5_is_the_layout_keras_own_legacy_writer_produces(tmp_path):
    """Cross-check against Keras' writer (a private module, hence only here, and skippable)."""
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    model = models.build_model("cnn", HP)
    training.save_param_hdf5(model, tmp_path / "ours.hdf5")
    with h5py.File(tmp_path / "keras.hdf5", "w") as h5:
        legacy.save_weights_to_hdf5_group(h5, model)
    assert _h5_tree(tmp_path / "ours.hdf5") == _h5_tree(tmp_path / "keras.hdf5")
