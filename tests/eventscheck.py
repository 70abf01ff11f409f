"""Shared by the tests of the TensorBoard event files (mnistflow.summaries): what TensorBoard's
own readers make of a run's folder is exactly its history.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SCALARS = {
    "train": {"epoch_loss": "loss", "epoch_accuracy": "accuracy"},
    "validation": {"epoch_loss": "val_loss", "epoch_accuracy": "val_accuracy"},
}


def read_scalars(folder: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{part: {tag: [(step, value), ...]}} as TensorBoard's EventAccumulator reads them (with
    its purge of events a restarted training wrote again), checked against its plugin reader
    (what TensorBoard's Python server shows)."""
    from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator
    from tensorboard.util import tensor_util

    parts = {}
    for part in ("train", "validation", "test"):
        if not (folder / part).is_dir():
            continue
        legacy = event_accumulator.EventAccumulator(str(folder / part))
        legacy.Reload()
        parts[part] = {
            tag: [(e.step, e.value) for e in legacy.Scalars(tag)]
            for tag in legacy.Tags()["scalars"]
        }
        plugin = plugin_event_accumulator.EventAccumulator(str(folder / part))
        plugin.Reload()
        shown = {
            tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events]
            for tag in plugin.PluginTagToContent("scalars")
            if (events := plugin.Tensors(tag))
        }
        assert shown == parts[part], (part, shown, parts[part])
    return parts


def history(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def assert_events_match_history(folder: Path, history_csv: Path) -> dict:
    """Every epoch of history.csv exactly once, with its values (float32, as Keras' metrics
    are), in train/ and validation/; the learning rate for each; the test accuracy at the last
    epoch. Returns what was read."""
    rows = history(history_csv)
    epochs = [int(row["epoch"]) for row in rows]
    assert epochs == list(range(1, len(rows) + 1)), epochs
    scalars = read_scalars(folder)
    for part, tags in SCALARS.items():
        for tag, column in tags.items():
            got = scalars[part][tag]
            assert [step for step, _ in got] == epochs, (part, tag, got)
            expected = [float(np.float32(row[column])) for row in rows]
            assert [value for _, value in got] == expected, (part, tag, got, expected)
    rates = scalars["train"]["epoch_learning_rate"]
    assert [step for step, _ in rates] == epochs and all(value >= 0 for _, value in rates)
    assert [step for step, _ in scalars["test"]["epoch_accuracy"]] == [epochs[-1]]
    return scalars


def event_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*tfevents*"))
