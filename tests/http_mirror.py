"""Pytest fixtures: a real HTTP mirror on 127.0.0.1 that can misbehave on demand.

    def test_something(http_mirror, dead_url, tmp_path):
        server = http_mirror(tmp_path)           # serves tmp_path at server.url ("http://127.0.0.1:PORT/")
        server.fail("a.gz", 500, times=1)        # first request answers 500, later ones the file
        server.cut("b.gz")                       # every request closes the connection mid-file
        server.serve("c.gz", b"junk")            # serve these bytes instead of the file
        server.delay("d.gz", 2.0, times=1)       # first request waits 2 s before answering
        ...
        assert server.hits("a.gz") == 2

``dead_url`` is a base URL where nothing listens (connection refused).
Load with ``pytest_plugins = ["http_mirror"]`` in conftest.py, with ``tests`` on sys.path.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@dataclass
class Fault:
    status: int | None = None  # answer with this HTTP error status
    body: bytes | None = None  # answer 200 with these bytes instead of the file
    cut_after: int | None = None  # send the full Content-Length, then close after this many bytes
    delay_s: float = 0.0  # wait before answering (to provoke client timeouts)
    times: int | None = None  # requests it applies to; None: all of them


class MirrorServer:
    """Serves ``directory`` at ``url``; faults are injected per path relative to ``url``."""

    def __init__(self, directory: Path, prefix: str = ""):
        self.directory = Path(directory)
        self.prefix = prefix.strip("/")
        self.requests: list[str] = []  # paths requested, relative to url, in order
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/" + (f"{self.prefix}/" if self.prefix else "")
        # A short poll interval: shutdown() waits for it, once per server at teardown.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def __str__(self) -> str:
        return self.url

    # Fault injection. Faults on a path apply in the order they were added.
    def add_fault(self, path: str, fault: Fault) -> MirrorServer:
        with self._lock:
            self._faults.setdefault(path.lstrip("/"), []).append(fault)
        return self

    def fail(self, path: str, status: int = 404, times: int | None = None) -> MirrorServer:
        return self.add_fault(path, Fault(status=status, times=times))

    def serve(self, path: str, body: bytes, times: int | None = None) -> MirrorServer:
        return self.add_fault(path, Fault(body=body, times=times))

    def cut(self, path: str, after: int | None = None, times: int | None = None) -> MirrorServer:
        """Close the connection mid-file (after ``after`` bytes; default: half the file)."""
        return self.add_fault(path, Fault(cut_after=-1 if after is None else after, times=times))

    def delay(self, path: str, seconds: float, times: int | None = None) -> MirrorServer:
        return self.add_fault(path, Fault(delay_s=seconds, times=times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def hits(self, path: str) -> int:
        return self.requests.count(path.lstrip("/"))

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            self.requests.append(path)
            faults = self._faults.get(path, [])
            while faults:
                fault = faults[0]
                if fault.times is None:
                    return fault
                if fault.times > 0:
                    fault.times -= 1
                    return fault
                faults.pop(0)
            return None

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that gave up (timeout, failed verification) is expected here, not a bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _make_handler(server: MirrorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (name fixed by http.server)
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            if server.prefix:
                if not path.startswith(server.prefix + "/"):
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                path = path[len(server.prefix) + 1 :]
            fault = server._next_fault(path)
            if fault and fault.delay_s:
                time.sleep(fault.delay_s)
            if fault and fault.status:
                self.send_error(fault.status)
                return
            if fault and fault.body is not None:
                self._send_bytes(fault.body)
                return
            file = (server.directory / path).resolve()
            if server.directory.resolve() not in file.parents or not file.is_file():
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            if fault and fault.cut_after is not None:
                data = file.read_bytes()
                cut = len(data) // 2 if fault.cut_after < 0 else fault.cut_after
                self._send_bytes(data, cut_after=cut)
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(file.stat().st_size))
            self.end_headers()
            with file.open("rb") as stream:
                shutil.copyfileobj(stream, self.wfile)

        def _send_bytes(self, data: bytes, cut_after: int | None = None) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if cut_after is None:
                self.wfile.write(data)
                return
            self.wfile.write(data[:cut_after])
            self.wfile.flush()
            # Close now, with the promised bytes still missing, as a dropped connection would.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            pass  # keep pytest output clean; server.requests records what was asked

    return Handler


def no_proxy_for_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local requests must not go through a proxy from the environment (also for subprocesses)."""
    for name in ("no_proxy", "NO_PROXY"):
        existing = os.environ.get(name)
        monkeypatch.setenv(name, "127.0.0.1,localhost" + (f",{existing}" if existing else ""))


@pytest.fixture
def http_mirror(monkeypatch) -> Iterator:
    """Factory: ``http_mirror(directory, prefix="")`` starts a MirrorServer, stopped at teardown."""
    no_proxy_for_localhost(monkeypatch)
    servers: list[MirrorServer] = []

    def start(directory: Path, prefix: str = "") -> MirrorServer:
        server = MirrorServer(directory, prefix)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def dead_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
