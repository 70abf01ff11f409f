"""The same work as the workflow's softmax run, as one plain script (the seeds' style).

Reads the IDX files, holds out the same kind of validation split, trains the seed's softmax
regression, saves the weights and evaluates: the baseline the pipeline's overhead is measured
against. Usage: python plain_softmax.py MNIST_DIR OUT_DIR
"""

import gzip
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def read(path, offset):
    return np.frombuffer(gzip.decompress(Path(path).read_bytes()), np.uint8, offset=offset)


source, out = Path(sys.argv[1]), Path(sys.argv[2])
x_train = read(source / "train-images-idx3-ubyte.gz", 16).reshape(-1, 784) / np.float32(255)
y_train = read(source / "train-labels-idx1-ubyte.gz", 8)
x_test = read(source / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784) / np.float32(255)
y_test = read(source / "t10k-labels-idx1-ubyte.gz", 8)
keras.utils.set_random_seed(0)
order = np.random.default_rng(0).permutation(len(y_train))
val, train = order[:5000], order[5000:]

model = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(10, activation="softmax")])
model.compile(loss="sparse_categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
model.fit(
    x_train[train],
    y_train[train],
    batch_size=128,
    epochs=20,
    verbose=2,
    validation_data=(x_train[val], y_train[val]),
)
out.mkdir(parents=True, exist_ok=True)
model.save_weights(out / "param.weights.h5")
score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
