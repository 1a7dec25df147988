"""A middleware that trickles bytes cannot hold a run forever.

Each JSON request attempt is bounded by ``Limits.json_request_seconds`` as a
whole, and a cancel stops it, whether the server trickles its headers or its
body.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from update_helpers import child_env, update_command

from codemate_setup.client import MiddlewareClient
from codemate_setup.config import Limits
from codemate_setup.errors import MiddlewareError, SetupCancelledError

# One second for a whole JSON request, while each socket read may take longer.
SHORT_DEADLINE = Limits(json_request_seconds=1.0, read_timeout=30.0, max_retries=0)
NO_DEADLINE = Limits(json_request_seconds=3600.0, read_timeout=30.0, max_retries=0)


class TrickleServer:
    """Loopback server that sends one byte of its response every 0.1 s.

    ``headers=True`` trickles the status line and headers, else it sends the
    headers at once and trickles a JSON body that never ends.
    """

    def __init__(self, *, headers: bool) -> None:
        self.trickle_headers = headers
        self.requests = 0
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(
                target=self._serve, args=(connection,), daemon=True
            ).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            try:
                if not self.trickle_headers:
                    connection.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
                        b'{"status": "ok", "pad": "'
                    )
                for byte in self._bytes():
                    if self.stopped.wait(0.1):
                        return
                    connection.sendall(byte)
            except OSError:
                return

    def _bytes(self) -> Iterator[bytes]:
        if self.trickle_headers:
            yield from (bytes([b]) for b in b"HTTP/1.1 200 OK\r\n")
            while True:
                yield from (bytes([b]) for b in b"X-Slow: a\r\n")
        while True:
            yield b"a"

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture(params=[True, False], ids=["headers", "body"])
def trickle(request: pytest.FixtureRequest) -> Iterator[TrickleServer]:
    server = TrickleServer(headers=request.param)
    yield server
    server.stop()


def test_trickled_response_times_out(trickle: TrickleServer) -> None:
    with (
        MiddlewareClient(trickle.url, limits=SHORT_DEADLINE) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        client.health()

    assert "timed out" in str(caught.value)
    assert "took longer than 1 s" in str(caught.value)


def test_trickled_response_stops_on_cancel(trickle: TrickleServer) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()

    with (
        MiddlewareClient(trickle.url, limits=NO_DEADLINE, cancel=cancel) as client,
        pytest.raises(SetupCancelledError, match="was cancelled"),
    ):
        client.health()

    timer.cancel()


@pytest.mark.slow
def test_update_sigterm_during_trickle_cancels(
    tmp_path: Path, trickle: TrickleServer
) -> None:
    home = tmp_path / "home"
    command = update_command("1.0.0", "--home", str(home), "--yes")
    child = subprocess.Popen(
        [*command, "--middleware-url", trickle.url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while trickle.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    state = json.loads((home / "setup_state.json").read_text())
    assert child.returncode == 130
    assert "Traceback" not in stderr
    assert state["overall_status"] == "cancelled"
    assert not (home / "version.txt").exists()
