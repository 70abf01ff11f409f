"""One process of a training spread over several processes (config distribution.mode: processes).

``python -m mnistflow.worker <arguments.json>``: workflow/scripts/train.py writes the
training's arguments to the JSON file and starts one worker per process with
``launch.run_workers``; each worker learns its place from its environment
(``place.this_process``), joins the others (``distribution.setup``) and trains. Only
process 0 logs and writes outputs and checkpoints; the exit code is the training's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mnistflow import runtime


def write_arguments(path: str | Path, arguments: dict) -> Path:
    """The JSON file a worker reads (train.py): plain values only."""
    from mnistflow.atomic import write_text

    write_text(path, json.dumps(arguments, indent=1, sort_keys=True))
    return Path(path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mnistflow.worker <arguments.json>", file=sys.stderr)
        return 2
    arguments = json.loads(Path(argv[0]).read_text())
    from mnistflow import place

    process = place.this_process()
    expected = arguments["processes"]
    if process.count != expected:
        raise place.LaunchError(
            f"this training was configured for {expected} processes "
            f"(distribution.processes), but was started as {process.count}: ask the "
            f"scheduler for {expected} tasks (the train rule's `tasks` resource does)"
        )
    hp = arguments["train"]["hp"]
    runtime.configure(
        arguments["threads"],
        seed=hp["seed"],
        **arguments["compute"],
        cpu_devices=arguments["devices"],
    )
    from mnistflow import distribution, stopping, training  # imports Keras: after configure

    spread = distribution.setup("processes", process, arguments["devices"])

    def log(line: str) -> None:
        if spread.writes:
            print(line, flush=True)

    try:
        training.train(**arguments["train"], log=log, spread=spread)
    except stopping.Stopped as stop:
        log(f"{stop}; rerun (or let the scheduler retry) to resume.")
        exit_now(stop.exit_code)
    return 0


def exit_now(code: int) -> None:
    """End a stopped worker within a scheduler's kill delay: the checkpoint is written, so
    leave the other processes and skip Python's teardown.

    With JAX and XLA loaded, the interpreter's exit (atexit handlers, XLA's destructors) took
    6-11 s after the stop here (2-core AMD EPYC VM, load 9-12), longer than the 5 s KillWait of
    the test cluster (SLURM's default is 30 s), so the workers were SIGKILLed; leaving the
    others (jax.distributed.shutdown) takes 0.01 s, and with os._exit the workers are gone
    0.5-0.7 s after the SIGTERM. The files a training writes are closed and renamed by then.
    """
    import jax

    jax.distributed.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
