"""Whole training state on disk, so that a killed training resumes where it stopped.

A checkpoint is one ``.npz`` file: every model variable (weights, batch-norm statistics,
the Dropout layers' random-generator states), every optimizer variable (step counter,
moments, the weight average), the running training metrics of the current epoch, and a
JSON header with the position (epoch, batch) and the history so far. The shuffling
order needs no state: each epoch's order is drawn from ``(seed, epoch)``
(``training.epoch_order``), and the learning-rate schedule follows the optimizer's step
counter.

Files are written under a temporary name, synced, then renamed, and the previous one is
kept: a save torn by a kill or a crash leaves the older file to fall back on. Each file
carries the fingerprint of its run (data, family, hyperparameters, training code, Keras
version and backend); one written for anything else is ignored, with the reason logged.

A finished training saves its final state too, marked complete, and keeps it until Snakemake
has seen its job succeed (``remove_finished``, the workflow's ``onsuccess``): a job killed in
between, or whose outputs Snakemake removed, writes them again from it without training.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistflow.atomic import atomic_path

FORMAT = 2  # 2: the header says whether the run is complete
KEEP = 2  # the newest file and the one before it
PREFIX = "checkpoint-"


def digest(*parts: bytes | str) -> str:
    # Identity, not security: SHA-1 reads MNIST's 190 MB twice as fast as SHA-256 here.
    h = hashlib.sha1(usedforsecurity=False)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def fingerprint(
    family: str, hp: dict, arrays: Iterable[np.ndarray], code: Iterable[str | Path]
) -> dict[str, str]:
    """What defines a run, one digest per part: a checkpoint resumes only an identical run."""
    import keras

    return {
        "data": digest(*(np.ascontiguousarray(a).data for a in arrays)),
        "family": family,
        "hyperparameters": digest(json.dumps(hp, sort_keys=True)),
        "code": digest(
            *(Path(p).read_bytes() for p in code), keras.__version__, keras.backend.backend()
        ),
    }


@dataclass
class State:
    """Where a training stands: position, history so far, and every variable's value."""

    epoch: int  # 0-based epoch in progress
    batch: int  # batches of that epoch already trained
    step: int  # batches trained in all
    epoch_seconds: float = 0.0  # training time already spent in the epoch in progress
    rows: list[dict] = field(default_factory=list)  # history.csv rows of finished epochs
    lines: list[str] = field(default_factory=list)  # their log lines
    written: str = ""  # local time of the save, for the log
    complete: bool = False  # the run's final state: its outputs' weights, nothing left to train
    variables: dict[str, list[np.ndarray]] = field(default_factory=dict)


def capture(model, with_metrics: bool) -> dict[str, list[np.ndarray]]:
    """Copies of the model's, its optimizer's (and its running metrics') variables."""
    groups = {"model": model.variables, "optimizer": model.optimizer.variables}
    if with_metrics:
        groups["metrics"] = model.metrics_variables
    return {name: [_value(v) for v in vs] for name, vs in groups.items()}


def _value(variable) -> np.ndarray:
    """A copy of a variable's value on this process. Replicated over several processes
    (mnistflow.distribution), a jax array is not fully addressable (``numpy()`` raises):
    every process holds a full copy, its first local shard."""
    value = variable.value
    if getattr(value, "is_fully_addressable", True):
        return np.array(variable.numpy())
    return np.array(value.addressable_data(0))


def restore(variables: list, values: list[np.ndarray], what: str) -> None:
    """Assign saved values; a different set of variables is a bug, never silently skipped."""
    if len(variables) != len(values):
        raise ValueError(
            f"checkpoint has {len(values)} {what} variables, the model {len(variables)}"
        )
    for variable, value in zip(variables, values, strict=True):
        if tuple(variable.shape) != value.shape:
            raise ValueError(
                f"checkpoint {what} variable {variable.path}: shape {value.shape}, "
                f"the model's {tuple(variable.shape)}"
            )
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


class Store:
    """The checkpoints of one run, in their own directory."""

    def __init__(
        self,
        directory: str | Path,
        run_fingerprint: dict,
        log: Callable[[str], None],
        root: str | Path | None = None,
    ):
        self.directory, self.fingerprint, self.log = Path(directory), run_fingerprint, log
        # clear() also removes the empty directories between ``directory`` and ``root``.
        self.root = Path(root) if root is not None else self.directory

    def files(self) -> list[Path]:
        """Newest first (the serial number in the name orders them)."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"{PREFIX}*.npz"), reverse=True)

    def save(self, state: State) -> Path:
        files = self.files()
        serial = int(files[0].stem.removeprefix(PREFIX)) + 1 if files else 1
        dest = self.directory / f"{PREFIX}{serial:06d}.npz"
        state.written = datetime.datetime.now().isoformat(timespec="seconds")
        header = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            **{k: getattr(state, k) for k in ("epoch", "batch", "step", "epoch_seconds")},
            **{k: getattr(state, k) for k in ("rows", "lines", "written", "complete")},
            "counts": {name: len(values) for name, values in state.variables.items()},
        }
        arrays = {"header": np.array(json.dumps(header))}
        for name, values in state.variables.items():
            arrays.update({f"{name}/{i}": value for i, value in enumerate(values)})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())  # on disk before the rename makes it the newest
        for old in self.files()[KEEP:]:
            old.unlink(missing_ok=True)
        return dest

    def load(self) -> State | None:
        """The newest usable checkpoint; unreadable or foreign ones are logged and skipped."""
        for path in self.files():
            try:
                with np.load(path) as npz:
                    header = json.loads(str(npz["header"]))
                    if header.get("format") != FORMAT:
                        reason = f"format {header.get('format')}, this code writes {FORMAT}"
                    elif header["fingerprint"] != self.fingerprint:
                        reason = (
                            "written for a different run: its "
                            + ", ".join(
                                key
                                for key in self.fingerprint
                                if header["fingerprint"].get(key) != self.fingerprint[key]
                            )
                            + " differ(s)"
                        )
                    else:
                        variables = {
                            name: [npz[f"{name}/{i}"] for i in range(count)]
                            for name, count in header["counts"].items()
                        }
                        return State(
                            **{k: header[k] for k in ("epoch", "batch", "step")},
                            **{k: header[k] for k in ("epoch_seconds", "rows", "lines")},
                            written=header["written"],
                            complete=header["complete"],
                            variables=variables,
                        )
            except Exception as error:  # a torn or corrupt file: any error means unusable
                reason = f"unreadable ({type(error).__name__}: {error})"
            self.log(f"Ignoring checkpoint {path}: {reason}")
        return None

    def clear(self) -> None:
        """Remove this run's checkpoints (after it succeeded), and empty parents up to root.

        Only the files this class writes (and their temporary names), never a folder's other
        files: checkpoint.directory is the user's choice (settings.checkpoint_errors).
        """
        own = [*self.files(), *self.directory.glob(f".{PREFIX}*.tmp.npz")]
        for path in own:
            path.unlink(missing_ok=True)
        parent = self.directory
        while self.root in parent.parents or parent == self.root:
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent


def is_complete(path: Path) -> bool:
    """Whether checkpoint ``path`` holds a finished run's final state (reads its header only)."""
    try:
        with np.load(path) as npz:
            header = json.loads(str(npz["header"]))
    except Exception:  # torn or corrupt: not a final state to rely on
        return False
    return header.get("format") == FORMAT and header.get("complete") is True


def remove_finished(root: str | Path, finished: Callable[[Path], bool]) -> list[Path]:
    """Clear the runs under ``root`` whose newest checkpoint is complete and for which
    ``finished(run folder, relative to root)`` says the outputs exist; returns their folders.

    The workflow's ``onsuccess``: Snakemake has seen every job succeed, so no retry needs a
    final state any more. The others stay: a training still to resume, a successive-halving
    rung, a finished one whose outputs are gone (its job was killed before Snakemake saw it
    succeed, and its next run writes them from the final state).
    """
    root, cleared = Path(root), []
    for directory in sorted({path.parent for path in root.glob(f"**/{PREFIX}*.npz")}):
        store = Store(directory, {}, print, root=root)
        if is_complete(store.files()[0]) and finished(directory.relative_to(root)):
            store.clear()
            cleared.append(directory)
    return cleared
