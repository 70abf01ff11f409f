"""Graceful stop: a signal asks the training to stop after its current step.

Schedulers warn a job before killing it: SIGTERM (SLURM and PBS at the time limit, or
earlier with SLURM's ``--signal``), SIGXCPU (PJM at its elapse limit), SIGUSR1 (Grid
Engine's soft limit ``s_rt``) and SIGUSR2 (Grid Engine's ``-notify`` before a kill); see
profiles/README.md. Ctrl-C sends SIGINT.
The handler only records the request: training checks it between steps, writes a
checkpoint and raises ``Stopped``, so the job exits non-zero and is retried.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGXCPU, signal.SIGINT)


class Stopped(Exception):
    """Training stopped on a signal after writing a checkpoint."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # as if killed by the signal: the shell's convention


class StopRequest:
    def __init__(self):
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum, frame):
        self.signum = signum


@contextlib.contextmanager
def on_signals(signals=SIGNALS) -> Iterator[StopRequest]:
    """Within the block, the signals set the yielded request instead of killing the process."""
    request = StopRequest()
    previous = {signum: signal.signal(signum, request._handle) for signum in signals}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
