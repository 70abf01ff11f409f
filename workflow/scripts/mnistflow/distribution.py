"""Data-parallel training (config ``distribution``): one run over several devices or processes.

JAX backend only, through ``keras.distribution``: the processes of a run join with
``keras.distribution.initialize(coordinator, count, index)`` (CPU collectives over gloo),
and ``DataParallel`` replicates the variables on every device and splits each batch between
them. Multi-worker training with TensorFlow is broken in Keras 3 (keras-team/keras#20585).

Each global batch is the ``batch_size`` images a single-device run trains on: process p of P
feeds the p-th contiguous part of every batch (``shard``), its devices split that part again,
and the gradients are summed over all of them, so for a seed the weights do not depend on
how the batch was split (bit for bit between 2 processes x 1 device and 1 process x 2
devices here; to float32 round-off against one device). Only process 0 writes files; every
process keeps a full copy of the (replicated) variables, so any of them can save.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnistflow.distribution_config import MODES


class DistributionError(RuntimeError):
    """The distribution cannot be set up; the message names the problem and the fix."""


@dataclass(frozen=True)
class Setup:
    """How one training is spread: this process's place and the devices it uses."""

    mode: str = "none"
    process_index: int = 0
    process_count: int = 1
    devices: int = 1  # per process
    backend: str = ""
    platform: str = ""

    @property
    def active(self) -> bool:
        return self.mode != "none"

    @property
    def writes(self) -> bool:
        """Whether this process writes the outputs and checkpoints (process 0)."""
        return self.process_index == 0

    @property
    def replicas(self) -> int:
        """Devices in all, each training on its part of every batch."""
        return self.process_count * self.devices

    def describe(self) -> str:
        """ "2 processes x 1 device (jax, cpu)", for the log."""

        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 'es' if word.endswith('s') else 's'}"

        return (
            f"{plural(self.process_count, 'process')} x {plural(self.devices, 'device')} "
            f"({self.backend}, {self.platform})"
        )

    def agree(self, signum: int | None, due: bool) -> tuple[int | None, bool]:
        """Decisions every process must take together, between the same two steps.

        A stop request (a signal number) reaches the processes of a job at slightly
        different steps, and "a checkpoint is due" depends on each process's clock: the
        processes stop if any of them was asked to, and save when process 0's clock says
        so. A collective: every process calls it at the same points.
        """
        if self.process_count == 1:
            return signum, due
        from jax.experimental import multihost_utils

        mine = np.array([signum or 0, int(due)], dtype=np.int32)
        everyone = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 2)
        agreed = int(everyone[:, 0].max())
        return (agreed or None), bool(everyone[0, 1])

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.replicas:
            raise DistributionError(
                f"batch_size {batch_size} does not split evenly over {self.describe()}: "
                f"set the family's hyperparameters batch_size to a multiple of "
                f"{self.replicas} (distribution.processes x distribution.devices)"
            )

    def usable(self, count: int, batch_size: int) -> int:
        """Images of an epoch that are trained: all, except that a last, partial batch is
        cut to a multiple of the devices (it must split evenly; at most replicas - 1 images
        an epoch, different ones each epoch as the order is shuffled)."""
        if not self.active:
            return count
        last = count % batch_size
        return count - last % self.replicas

    def shard(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        """This process's part of ``order`` (indices of a global epoch): the
        ``process_index``-th contiguous part of every ``batch_size`` batch, so that with a
        local batch of ``batch_size / process_count`` the processes' batches together are
        exactly the single-process batches, in order."""
        count = self.process_count
        if count == 1:
            return order[: self.usable(len(order), batch_size)]
        full = len(order) // batch_size * batch_size
        usable = self.usable(len(order), batch_size)
        head = order[:full].reshape(-1, count, batch_size // count)[:, self.process_index]
        tail = order[full:usable].reshape(count, -1)[self.process_index]
        return np.concatenate([head.ravel(), tail])

    def local_batch_size(self, batch_size: int) -> int:
        return batch_size // self.process_count


NO_DISTRIBUTION = Setup()


def setup(mode: str, process=None, devices: int = 1) -> Setup:
    """Join the run's processes and make Keras replicate over their devices.

    ``process``: this process's place (``place.Process``: index, count, coordinator;
    None: a single process). Call after runtime.configure, before the model is built.
    """
    if mode not in MODES:
        raise DistributionError(
            f"unknown distribution.mode {mode!r}; allowed values: {', '.join(MODES)}"
        )
    index, count = (process.index, process.count) if process is not None else (0, 1)
    if mode == "none":
        if count != 1 or devices != 1:
            raise DistributionError(
                f"distribution.mode none runs one process on one device, not {count} "
                f"process(es) x {devices} device(s): set distribution.mode"
            )
        return NO_DISTRIBUTION
    import keras

    if keras.backend.backend() != "jax":
        raise DistributionError(
            f"distribution.mode {mode} needs compute.backend: jax, Keras runs "
            f"{keras.backend.backend()!r}: set compute.backend: jax (keras-team/keras#20585)"
        )
    if mode == "devices" and count != 1:
        raise DistributionError(
            f"distribution.mode devices is one process, but this is process {index} of "
            f"{count}: set distribution.mode: processes, or start one process"
        )
    if count > 1:
        if not process.coordinator:
            raise DistributionError(
                f"process {index} of {count} does not know where process 0 listens "
                "(MNISTFLOW_COORDINATOR=host:port is unset): start the processes with "
                "workflow/scripts/train.py (mnistflow.launch.run_workers), which sets it"
            )
        try:
            keras.distribution.initialize(process.coordinator, count, index)
        except Exception as error:
            raise DistributionError(
                f"process {index} of {count} could not join the others through "
                f"{process.coordinator} ({type(error).__name__}: {error}); check that "
                "process 0's node is reachable on that port from every node"
            ) from error
    import jax

    chosen = []
    for p in range(count):
        own = sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)
        if len(own) < devices:
            raise DistributionError(
                f"distribution.devices is {devices}, but process {p} has {len(own)} "
                f"{jax.default_backend()} device(s) ({own}): ask the scheduler for "
                f"{devices} GPUs per process (resources.train.gpu), or lower "
                "distribution.devices"
            )
        chosen += own[:devices]
    keras.distribution.set_distribution(
        # auto_shard_dataset=False: each process is given its own part (Setup.shard).
        keras.distribution.DataParallel(devices=chosen, auto_shard_dataset=False)
    )
    return Setup(mode, index, count, devices, "jax", chosen[0].platform)


def release() -> None:
    """Back to no distribution: models built from now on live on this process only."""
    import keras

    keras.distribution.set_distribution(None)
