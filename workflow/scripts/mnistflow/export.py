"""The trained model as a TensorFlow SavedModel for serving (TF Serving, tf.saved_model.load).

It reads ``model.keras`` (the portable model: no augmentation layers), so the export needs
neither this package nor the training graph, and can run as its own step after training.
Two signatures, both returning the 10 class probabilities of each image, float32 (N, 10):

- ``serve`` (the default, ``serving_default``): float32 images (N, 28, 28) in [0, 1], the
  preprocessed form (pixel / 255);
- ``serve_uint8``: uint8 images (N, 28, 28) as files hold them (0..255); divided by 255 here,
  as the preprocess step does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import keras

SIDE = 28


def export_saved_model(model_keras: str | Path, dest: str | Path) -> None:
    """Export ``model_keras`` to the SavedModel folder ``dest`` (written beside it, then renamed,
    so an interrupted export leaves no half-written folder)."""
    import tensorflow as tf  # the SavedModel format is TensorFlow's, whatever backend trained

    model = keras.saving.load_model(model_keras, compile=False)
    shape = model.input_shape[1:]

    def probabilities(images):
        return model(tf.reshape(images, (-1, *shape)), training=False)

    archive = keras.export.ExportArchive()
    archive.track(model)
    images = tf.TensorSpec((None, SIDE, SIDE), tf.float32, name="images")
    archive.add_endpoint("serve", probabilities, input_signature=[images])
    raw = tf.TensorSpec((None, SIDE, SIDE), tf.uint8, name="images")
    archive.add_endpoint(
        "serve_uint8",
        lambda pixels: probabilities(tf.cast(pixels, tf.float32) / 255.0),
        input_signature=[raw],
    )
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    archive.write_out(str(tmp), verbose=False)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
