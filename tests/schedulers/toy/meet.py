"""A stand-in for a training's worker: report who I am, meet the others at the coordinator.

    python meet.py OUT_DIR [meet|fail|wait]

Each process asks mnistflow.place.this_process() for its index, the count and the
coordinator, then process 0 listens on the coordinator's port and every other process
connects and says its index: the same rendezvous a multi-process training makes (JAX's
coordinator service listens on process 0). Each writes OUT_DIR/process_<index>.json.
  meet  (default) meet, write, exit 0
  fail  meet; process 1 exits 3, process 0 waits 120 s (the launcher must stop it)
  wait  meet, write OUT_DIR/ready_<index>, then wait up to 120 s for SIGTERM, SIGINT or
        SIGUSR1, take 2 s (a checkpoint), record which arrived and exit 0 (a graceful stop)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from mnistflow.place import this_process

MEET_TIMEOUT = 60
CHECKPOINT_S = 2


def meet(index: int, count: int, coordinator: str) -> dict:
    host, port = coordinator.rsplit(":", 1)
    if index == 0:
        with socket.create_server(("", int(port))) as server:
            server.settimeout(MEET_TIMEOUT)
            met = []
            for _ in range(count - 1):
                conn, peer = server.accept()
                with conn:
                    met.append({"index": int(conn.recv(64).decode()), "from": peer[0]})
                    conn.sendall(b"welcome")
        return {"met": sorted(m["index"] for m in met), "peers": met}
    deadline = time.monotonic() + MEET_TIMEOUT
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(str(index).encode())
                return {"answer": conn.recv(64).decode()}
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> int:
    out = Path(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "meet"
    out.mkdir(parents=True, exist_ok=True)
    got: list[str] = []
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGXCPU):
        signal.signal(signum, lambda s, _f: got.append(signal.Signals(s).name))
    p = this_process()
    record = {
        "index": p.index,
        "count": p.count,
        "coordinator": p.coordinator,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "launched_by": sorted(
            k
            for k in os.environ
            if k in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID", "MNISTFLOW_PROCESS_INDEX")
        ),
        "slurm_step": os.environ.get("SLURM_STEP_ID"),
    }
    if p.count > 1:
        record.update(meet(p.index, p.count, p.coordinator))
    record_path = out / f"process_{p.index}.json"
    record_path.write_text(json.dumps(record))
    if mode == "fail":
        if p.index == 1:
            return 3
        time.sleep(120)
        return 0
    if mode == "wait":
        (out / f"ready_{p.index}").touch()
        deadline = time.monotonic() + 120
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(CHECKPOINT_S)  # a training saves its checkpoint now
        record["signals"] = sorted(set(got))
        record_path.write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
