"""TensorBoard event files of a training, written while it trains (docs/tensorboard.md).

The layout of Keras' TensorBoard callback, so that TensorBoard draws training and validation in
one chart: ``<folder>/train`` (``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate``) and
``<folder>/validation`` (``epoch_loss``, ``epoch_accuracy``), the step being the epoch number of
``history.csv`` (1, 2, ...); at the end ``<folder>/test``: ``epoch_accuracy`` at the last epoch's
step and the ``confusion_matrix`` image. Written with TensorBoard's own record writer and
protocol buffers, not TensorFlow's (a JAX training writes them too), and flushed and synced
after every epoch, so that a TensorBoard elsewhere (a login node, over NFS) shows each epoch
while the job runs.

A training resumed from a checkpoint opens new event files that start with a SessionLog START
at the first epoch it trains again: TensorBoard then drops that epoch and later ones from the
earlier files (written after the checkpoint, before the kill), and so shows every epoch once,
with the values of ``history.csv``. A training that starts afresh removes the event files of an
earlier training of the same run.
"""

from __future__ import annotations

import io
import itertools
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

PARTS = ("train", "validation", "test")
_serial = itertools.count()


class EventFiles:
    """The event files of one training run in ``folder``, one per part, for this attempt."""

    def __init__(self, folder: str | Path, first_epoch: int = 0):
        """``first_epoch``: the 0-based epoch this attempt trains first (a resumed run's)."""
        self.folder, self.first_step = Path(folder), first_epoch + 1
        self.files: dict[str, tuple] = {}
        if first_epoch == 0:
            for old in self.existing():
                old.unlink(missing_ok=True)

    def existing(self) -> list[Path]:
        return [p for part in PARTS for p in sorted((self.folder / part).glob("*tfevents*"))]

    def _file(self, part: str):
        if part not in self.files:
            from tensorboard.compat.proto import event_pb2
            from tensorboard.summary.writer.record_writer import RecordWriter

            folder = self.folder / part
            folder.mkdir(parents=True, exist_ok=True)
            # Readers take a run's files in name order: seconds, then nanoseconds, so that an
            # attempt started within the same second still sorts after the one before it.
            now = time.time_ns()
            name = (
                f"events.out.tfevents.{now // 10**9:010d}.{now % 10**9:09d}."
                f"{socket.gethostname()}.{os.getpid()}.{next(_serial)}"
            )
            handle = open(folder / name, "wb")  # noqa: SIM115  (open while the run trains)
            records = RecordWriter(handle)
            version = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
            start = event_pb2.Event(
                wall_time=time.time(),
                step=self.first_step,
                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
            )
            for event in (version, start):
                records.write(event.SerializeToString())
            self.files[part] = (handle, records)
        return self.files[part][1]

    def _write(self, part: str, step: int, summary) -> None:
        from tensorboard.compat.proto import event_pb2

        event = event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
        self._file(part).write(event.SerializeToString())

    def scalars(self, part: str, step: int, values: dict[str, float]) -> None:
        # simple_value: the scalars every reader shows, and EventAccumulator.Scalars returns
        from tensorboard.compat.proto import summary_pb2

        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in values.items()]
        )
        self._write(part, step, summary)

    def image(self, part: str, step: int, tag: str, png: bytes) -> None:
        """A PNG image (the images dashboard; EventAccumulator.Images)."""
        from PIL import Image
        from tensorboard.compat.proto import summary_pb2

        with Image.open(io.BytesIO(png)) as decoded:
            width, height = decoded.size
            channels = len(decoded.getbands())
        encoded = summary_pb2.Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=png
        )
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, image=encoded)])
        self._write(part, step, summary)

    def flush(self) -> None:
        """To the disk: a TensorBoard on another machine reads the file as it grows."""
        for handle, records in self.files.values():
            records.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        self.flush()
        for handle, _ in self.files.values():
            handle.close()
        self.files = {}


def start(
    folder: str | Path, first_epoch: int, rows: list[dict], learning_rate: Callable[[int], float]
) -> EventFiles:
    """The event files of a training that starts at ``first_epoch`` (0-based) with the history
    ``rows`` of the epochs before it (a resumed run's, from its checkpoint)."""
    events = EventFiles(folder, first_epoch)
    if first_epoch and not events.existing():
        # Resumed without the earlier attempts' files (removed, or TensorBoard was turned on
        # in between): the checkpoint's history has their values.
        for row in rows:
            epoch = int(row["epoch"])
            for part, values in epoch_scalars(row, learning_rate(epoch - 1)).items():
                events.scalars(part, epoch, values)
        events.flush()
    return events


def epoch_scalars(row: dict, learning_rate: float) -> dict[str, dict[str, float]]:
    """One epoch's scalars by part, from its history row (or Keras' logs)."""
    return {
        "train": {
            "epoch_loss": row["loss"],
            "epoch_accuracy": row["accuracy"],
            "epoch_learning_rate": learning_rate,
        },
        "validation": {"epoch_loss": row["val_loss"], "epoch_accuracy": row["val_accuracy"]},
    }


class Live(keras.callbacks.Callback):
    """Writes each epoch's scalars as it ends (keras.callbacks.TensorBoard would write a resumed
    epoch's partial fit() as an epoch of its own, and needs TensorFlow)."""

    def __init__(self, events: EventFiles, learning_rate: Callable[[int], float]):
        super().__init__()
        self.events, self.learning_rate = events, learning_rate

    def on_epoch_end(self, epoch, logs=None):
        for part, values in epoch_scalars(logs, self.learning_rate(epoch)).items():
            self.events.scalars(part, epoch + 1, values)
        self.events.flush()


def learning_rates(rate, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate at the end of each epoch (0-based), as Keras' TensorBoard callback logs
    it: ``rate`` (models.learning_rate) a number or a schedule of the step."""

    def at(epoch: int) -> float:
        if callable(rate):
            return float(keras.ops.convert_to_numpy(rate((epoch + 1) * steps_per_epoch)))
        return float(rate)

    return at


def confusion_png(matrix: np.ndarray) -> bytes:
    """The confusion matrix (rows true, columns predicted) as a small PNG: each cell shaded by
    its share of the row and labelled with its count (Pillow: the train step has no matplotlib)."""
    from PIL import Image, ImageDraw, ImageFont

    classes, cell, margin = len(matrix), 44, 36
    side = margin + classes * cell
    image = Image.new("RGB", (side + 8, side + 22), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    for i, j in itertools.product(range(classes), repeat=2):
        shade = int(255 - 200 * shares[i, j])
        x, y = margin + j * cell, margin + i * cell
        draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(shade, shade, 255), outline="#ccc")
        ink = "white" if shares[i, j] > 0.5 else "black"
        draw.text((x + cell / 2, y + cell / 2), str(matrix[i, j]), fill=ink, font=font, anchor="mm")
    for k in range(classes):
        centre = margin + k * cell + cell / 2
        draw.text((centre, margin / 2), str(k), fill="black", font=font, anchor="mm")
        draw.text((margin / 2, centre), str(k), fill="black", font=font, anchor="mm")
    draw.text((margin, side + 4), "rows: true class, columns: predicted", fill="black", font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_test(
    events: EventFiles, step: int, probabilities: np.ndarray, labels: np.ndarray
) -> float:
    """The test set's accuracy and confusion matrix at ``step`` (the last epoch); returns the
    accuracy (the evaluate step's, from the same probabilities).

    They replace an earlier attempt's: one killed after writing them, before Snakemake saw its
    job succeed, is followed by one that writes them again from the final checkpoint.
    """
    if "test" not in events.files:
        for old in sorted((events.folder / "test").glob("*tfevents*")):
            old.unlink(missing_ok=True)
    predicted = probabilities.argmax(axis=1)
    classes = probabilities.shape[1]
    matrix = np.bincount(labels.astype(np.int64) * classes + predicted, minlength=classes**2)
    accuracy = float(np.mean(predicted == labels))
    events.scalars("test", step, {"epoch_accuracy": accuracy})
    events.image(
        "test",
        step,
        "confusion_matrix",
        confusion_png(matrix.reshape(classes, classes)),
    )
    events.flush()
    return accuracy
