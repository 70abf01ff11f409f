"""Keras model families, built from their hyperparameters (backend-neutral Keras 3 code).

Each family keeps the architecture of the seed it comes from, so a ``param.hdf5`` written by
this workflow loads into a user's own copy of that architecture with ``model.load_weights``.
"""

from __future__ import annotations

import keras
from keras import layers

from mnistflow import runtime

NUM_CLASSES = 10
FAMILIES = ("softmax", "mlp", "cnn")


def _output() -> layers.Layer:
    # The softmax in float32 even under mixed precision: float16 probabilities round to
    # 0 or 1 and the loss overflows. Its weights are float32 under every policy anyway.
    return layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")


def softmax(hp: dict) -> keras.Model:
    """The seeds' softmax regression (shared/seeds 001): Dense(10) on 784 inputs."""
    return keras.Sequential([keras.Input(shape=(784,)), _output()], name="softmax")


def mlp(hp: dict) -> keras.Model:
    """The seeds' multilayer perceptron (shared/seeds 004): Flatten, Dense(128, ReLU), Dense(10)."""
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            layers.Flatten(),
            layers.Dense(hp["hidden_units"], activation="relu"),
            layers.Dropout(hp["dropout"]),
            _output(),
        ],
        name="mlp",
    )


class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, whose training step runs TensorFlow's fused kernel.

    Keras 3 normalises a batch with a dozen separate ops, which XLA would fuse; TensorFlow's
    op determinism turns XLA off, and then batch normalisation took about a fifth of a cnn
    step here (keras-team/keras-core#225, "BatchNorm is slow"). ``FusedBatchNormV3`` computes
    the same in one kernel, equal to float32 round-off (tests/test_models.py). Elsewhere
    (JAX, inference, masks) this is Keras' own layer; saved models hold Keras' layer
    (``portable``).
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and mask is None and self._fusable(inputs)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, "float32")  # as Keras does: statistics in float32
        empty = tf.constant([], "float32")
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=tf.cast(self.gamma, "float32"),
            offset=tf.cast(self.beta, "float32"),
            mean=empty,
            variance=empty,
            epsilon=self.epsilon,
            exponential_avg_factor=1.0,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the batch's unbiased variance; Keras averages the biased one.
        count = tf.cast(tf.size(x) // tf.shape(x)[-1], "float32")
        variance = variance * (count - 1) / count
        for average, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            average.assign(average * self.momentum + value * (1.0 - self.momentum))
        return tf.cast(y, self.compute_dtype)

    def _fusable(self, inputs) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)  # channels last, the kernel's NHWC
            and self.center
            and self.scale
            and not self.renorm
            and not self.synchronized
        )


BATCH_NORM_MOMENTUM = 0.99  # Keras' default: the moving statistics over ~100 steps


def _conv_bn_relu(
    filters: int, kernel_size: int, strides: int = 1, momentum: float = BATCH_NORM_MOMENTUM
) -> list[layers.Layer]:
    # Batch normalisation lets the CNN train at a high learning rate: few epochs, fast.
    return [
        layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False),
        FusedBatchNormalization(momentum=momentum),
        layers.ReLU(),
    ]


class RandomShift(layers.Layer):
    """Shift each training image by a random whole number of pixels (zeros fill in); inert
    when not training.

    Why not ``layers.RandomTranslation``: its bilinear image transform runs through
    ``map_coordinates``, which on JAX's CPU backend made a cnn epoch 8x slower (15 s against
    1.8 s on 12,800 images here; jax-ml/jax#26152, keras-team/keras#23229). A whole-pixel
    shift is two small batched matrix products with one-hot shift matrices: fast under every
    backend and compiler.
    """

    def __init__(self, pixels: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.pixels = pixels
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training or not self.pixels:
            return images
        size = images.shape[1]
        offsets = keras.random.randint(
            (2, keras.ops.shape(images)[0]),
            -self.pixels,
            self.pixels + 1,
            seed=self.seed_generator,
        )
        # shift[b, i, j] = 1 where j = i - offset[b]: row i of the output is row i - offset
        # of the input; rows shifted in from outside are zero (one_hot of an out-of-range
        # index is all zeros).
        index = keras.ops.arange(size)
        dtype = images.dtype
        down = keras.ops.one_hot(index[None, :] - offsets[0][:, None], size, dtype=dtype)
        right = keras.ops.one_hot(index[None, :] - offsets[1][:, None], size, dtype=dtype)
        images = keras.ops.einsum("bij,bjkc->bikc", down, images)
        return keras.ops.einsum("bkl,bilc->bikc", right, images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "pixels": self.pixels}


def _keras_own(layer: layers.Layer) -> layers.Layer:
    if not isinstance(layer, FusedBatchNormalization):
        return layer
    config = layer.get_config()
    del config["name"]  # Keras' name for its layer: batch_normalization, as before
    plain = layers.BatchNormalization.from_config(config)
    plain.build(layer.input.shape)
    plain.set_weights(layer.get_weights())
    return plain


def portable(model: keras.Model) -> keras.Model:
    """``model`` as it is saved: without its augmentation layers (they hold no weights),
    with Keras' own layers for this module's and Keras' own loss, so that model.keras loads
    with plain Keras, without this package."""
    kept = [_keras_own(layer) for layer in model.layers if not isinstance(layer, RandomShift)]
    smoothed = isinstance(getattr(model, "loss", None), SmoothedSparseCrossentropy)
    if kept == model.layers and not smoothed:
        return model
    bare = keras.Sequential([keras.Input(shape=model.input_shape[1:]), *kept], name=model.name)
    if model.compiled:  # the same optimizer, so its state is saved too
        # Keras' own loss: plain Keras could not load this module's smoothed one.
        bare.compile(optimizer=model.optimizer, loss=PLAIN_LOSS, metrics=["accuracy"])
    return bare


def cnn(hp: dict) -> keras.Model:
    """A small CNN, fast on CPUs: strided convolutions shrink the image before the widest layer.

    28x28 -> 14x14 (5x5, stride 2) -> 7x7 (3x3, stride 2) -> 7x7 (3x3), then dropout and
    Dense(10). Few filters keep it cheap: on a CPU the cost of a step follows the size of
    the activations more than the multiply-adds (with 16/32/48 filters and the fused batch
    normalisation an epoch took 0.62x a keras-io mnist_convnet epoch; 64 in the last, 7x7,
    convolution cost 1.14x the CPU time of 48; docs/benchmarks.md). With weight averaging,
    a short warm-up (``warmup_epochs``), a high peak learning rate, label smoothing, Adam's
    beta_2 at 0.99, 16/32/64 filters, the averaged weights' window matched by the batch
    norms' (both 0.98), shifts of up to 1 pixel and label smoothing 0.05 it ends its first
    epoch at 99.03-99.13% test accuracy (seeds 0-4; 98.95-99.04% with shifts of 2 and
    smoothing 0.1; docs/benchmarks.md).
    """
    first, second, third = hp["filters"]
    # Shifted copies of the training images (only while training): the accuracy margin over
    # seeds. No weights, so param.hdf5 is the same layout with or without it.
    shift = hp.get("shift", 0)
    augment = [RandomShift(shift)] if shift else []
    # The averaged weights are tested with the moving statistics: both must span the same
    # steps (averaging 0.993 with statistics at 0.99 ended epoch 1 at 94.5-97.9%, not 98.8%;
    # docs/benchmarks.md).
    momentum = hp.get("batch_norm_momentum", BATCH_NORM_MOMENTUM)
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            *augment,
            *_conv_bn_relu(first, 5, strides=2, momentum=momentum),
            *_conv_bn_relu(second, 3, strides=2, momentum=momentum),
            *_conv_bn_relu(third, 3, momentum=momentum),
            layers.Flatten(),
            layers.Dropout(hp["dropout"]),
            _output(),
        ],
        name="cnn",
    )


BUILDERS = {"softmax": softmax, "mlp": mlp, "cnn": cnn}


def build_model(family: str, hp: dict) -> keras.Model:
    if family not in BUILDERS:
        raise ValueError(f"unknown model family {family!r}, expected one of {FAMILIES}")
    return BUILDERS[family](hp)


WARMUP_FRACTION = 0.1  # of all training steps, unless hp sets warmup_epochs


def learning_rate(hp: dict, steps_per_epoch: int):
    """A constant rate, or linear warm-up then cosine decay over the whole run ("cosine").

    The warm-up lasts ``hp["warmup_epochs"]`` epochs (a fraction of one for the cnn: with
    10% of an 8-epoch run it took 80% of the first epoch, which then ended at 98.5% test
    accuracy; docs/benchmarks.md), or else 10% of all steps; at most half the run.
    """
    if hp.get("schedule", "constant") == "constant":
        return hp["learning_rate"]
    total = hp["epochs"] * steps_per_epoch
    if hp.get("warmup_epochs") is not None:
        warmup = round(hp["warmup_epochs"] * steps_per_epoch)
    else:
        warmup = int(total * WARMUP_FRACTION)
    warmup = max(1, min(warmup, total // 2))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=total - warmup,
        warmup_target=hp["learning_rate"],
        warmup_steps=warmup,
    )


AVERAGING_FRACTION = 0.1  # the averaging window spans at most this fraction of all steps


def averaging_momentum(hp: dict, steps_per_epoch: int) -> float:
    """``hp``'s ema_momentum, lowered for short runs (0: no averaging).

    Keras' average starts from the first step's weights; with momentum m it keeps about the
    last 1/(1-m) steps. A 60-step run on the bundled sample at 0.99 would still be half its
    untrained start (0.99**60 = 0.55), so the window is capped at 10% of the run.
    """
    momentum = hp.get("ema_momentum", 0)
    longest = 1 - 1 / (AVERAGING_FRACTION * hp["epochs"] * steps_per_epoch)
    return max(0.0, min(momentum, longest))


class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy against labels smoothed by ``smoothing``: the true
    class's target is 1 - smoothing + smoothing/10, every other class's smoothing/10.

    Keras' SparseCategoricalCrossentropy has no label smoothing (only the one-hot
    CategoricalCrossentropy has), and the workflow's labels are class numbers.
    """

    def __init__(self, smoothing: float, name="smoothed_sparse_categorical_crossentropy", **kw):
        super().__init__(name=name, **kw)
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        one_hot = keras.ops.one_hot(labels, NUM_CLASSES, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, label_smoothing=self.smoothing
        )

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}


PLAIN_LOSS = "sparse_categorical_crossentropy"


def loss(hp: dict | None):
    """``hp``'s training loss: cross-entropy, against smoothed labels with label_smoothing."""
    smoothing = (hp or {}).get("label_smoothing") or 0
    return SmoothedSparseCrossentropy(smoothing) if smoothing else PLAIN_LOSS


# Optimizers that take hp's beta_2 (Keras' name: the decay of the squared gradients' average).
WITH_BETA_2 = ("adam", "adamw")

OPTIMIZERS = {
    "rmsprop": keras.optimizers.RMSprop,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
}


# Run this many batches per call into TensorFlow: the same updates, far less per-step
# overhead, which dominates for small models on CPUs (softmax epochs ~1.5x faster here).
STEPS_PER_EXECUTION = 32


def compile_model(model: keras.Model, hp: dict | None = None, steps_per_epoch: int = 1):
    """Compile for training with ``hp``'s optimizer, or for evaluation only (``hp=None``)."""
    optimizer = "rmsprop"  # Keras' default; unused when only evaluating
    if hp is not None:
        ema_momentum = averaging_momentum(hp, steps_per_epoch)
        extra = {}
        if hp.get("beta_2") is not None:
            if hp["optimizer"] not in WITH_BETA_2:
                raise ValueError(
                    f"beta_2 is a hyperparameter of {' and '.join(WITH_BETA_2)}, not of "
                    f"{hp['optimizer']!r}: remove it or set optimizer: adam"
                )
            extra["beta_2"] = hp["beta_2"]
        optimizer = OPTIMIZERS[hp["optimizer"]](
            learning_rate=learning_rate(hp, steps_per_epoch),
            # Averaged weights are less noisy than the last step's: a fast, high learning
            # rate run reaches a given test accuracy epochs sooner.
            use_ema=ema_momentum > 0,
            ema_momentum=ema_momentum,
            **extra,
        )
    model.compile(
        optimizer=optimizer,
        loss=loss(hp),
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
        # XLA as configured (compute.jit_compile); "auto": on JAX always, on TensorFlow
        # only without op determinism.
        jit_compile=runtime.JIT_COMPILE,
    )
    return model


def reshape_for(model: keras.Model, images):
    """Images (N, 28, 28) reshaped to the model input, e.g. (N, 784) or (N, 28, 28, 1)."""
    return images.reshape((len(images), *model.input_shape[1:]))
