"""Response heads on the regular (``requests``) path: a deadline, and cancels.

Each test starts raw-socket servers on 127.0.0.1 that send the head a byte at
a time or never. Before the read timeout, only the head deadline (one window
of the floor on download speed) or a cancel can then end the request.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from download_support import fast_limits
from packaging.version import Version
from raw_server import ConnectionServer, request_heads
from update_helpers import (
    FAST_LIMITS,
    install_home,
    installed_tree,
    installed_version,
    publish_releases,
    read_state,
    tree_snapshot,
    update_in_process,
)

from codemate_setup.client import MiddlewareClient
from codemate_setup.download import DownloadItem, download_all
from codemate_setup.errors import ExitCode, MiddlewareError, SetupCancelledError
from codemate_setup.middleware import MiddlewareHandle

V1 = Version("1.0.0")

# A head that never ends: 1,000 header lines sent a byte every 0.3 s.
ENDLESS_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n" + b"X-Pad: a\r\n" * 1000
BYTE_INTERVAL = 0.3

# A window short enough for fast tests, and a read timeout that a byte every
# 0.3 s never trips.
WINDOW = 0.5
HEAD_LIMITS = fast_limits(
    low_speed_bytes=1000,
    low_speed_seconds=WINDOW,
    read_timeout=2.0,
    max_retries=1,
    json_request_seconds=20.0,
)

# Neither the head deadline nor the read timeout ends a request in a test.
PATIENT_LIMITS = fast_limits(
    low_speed_bytes=1000,
    low_speed_seconds=20.0,
    read_timeout=20.0,
    max_retries=0,
    json_request_seconds=20.0,
)


class HeadServer:
    """A loopback server that replies to each request as ``mode`` sets.

    ``"dribble"`` sends :data:`ENDLESS_HEAD` a byte at a time, and
    ``"silent"`` sends nothing and keeps the connection open. Only requests
    whose path contains ``trap_path`` get that treatment. The others are
    relayed to the ``upstream`` middleware. Without one they get a 404, sent
    once a trapped request waits.
    """

    def __init__(
        self,
        mode: str,
        *,
        upstream: MiddlewareHandle | None = None,
        trap_path: str = "",
    ) -> None:
        self.mode = mode
        self.upstream = upstream
        self.trap_path = trap_path
        self.trapped: list[str] = []
        self.trap_waiting = threading.Event()
        self._stopped = threading.Event()
        self._server = ConnectionServer(self._serve)
        self.port = self._server.port
        self.url = self._server.url("")

    def __enter__(self) -> HeadServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._server.close()

    def _serve(self, conn: socket.socket, _index: int) -> None:
        with contextlib.suppress(OSError):
            for request in request_heads(conn):
                if self._stopped.is_set():
                    return
                path = request.split(" ")[1]
                if self.trap_path not in path:
                    conn.sendall(self._relay(path, request))
                    continue
                self.trapped.append(path)
                self.trap_waiting.set()
                self._trap(conn)
                return

    def _trap(self, conn: socket.socket) -> None:
        if self.mode == "silent":
            # Returns when the client closes or the server stops.
            conn.recv(1)
            return
        for index in range(len(ENDLESS_HEAD)):
            if self._stopped.wait(BYTE_INTERVAL):
                return
            conn.sendall(ENDLESS_HEAD[index : index + 1])

    def _relay(self, path: str, request: str) -> bytes:
        if self.upstream is None:
            # Sent once a trapped request waits, so that a test can
            # end that wait with the failure of this one.
            self.trap_waiting.wait(2.0)
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        headers = {}
        for line in request.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.lower() in ("range", "if-range"):
                headers[name] = value.strip()
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream.port)
        try:
            upstream.request("GET", path, headers=headers)
            response = upstream.getresponse()
            body = response.read()
        finally:
            upstream.close()
        lines = [f"HTTP/1.1 {response.status} {response.reason}"]
        for name in ("Content-Type", "Content-Range", "ETag"):
            if response.getheader(name) is not None:
                lines.append(f"{name}: {response.getheader(name)}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class CancelLater:
    """An event that a timer sets after ``seconds``, recording when."""

    def __init__(self, seconds: float) -> None:
        self.event = threading.Event()
        self.set_at = 0.0
        self._timer = threading.Timer(seconds, self._set)
        self._timer.start()

    def _set(self) -> None:
        self.set_at = time.monotonic()
        self.event.set()

    def cancel_timer(self) -> None:
        self._timer.cancel()


def regular_item(stage: Path) -> DownloadItem:
    """An item without a hash, which always takes the regular path."""
    return DownloadItem(V1, "pkg/slow.bin", stage / "pkg" / "slow.bin", None, 7)


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    folder = tmp_path / "stage"
    folder.mkdir()
    return folder


# A head sent a byte at a time


@pytest.mark.timeout(15)
def test_download_head_trickle_times_out(stage: Path) -> None:
    item = regular_item(stage)
    started = time.monotonic()
    with (
        HeadServer("dribble") as server,
        MiddlewareClient(server.url, limits=HEAD_LIMITS) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        download_all(client, [item], workers=1)
    elapsed = time.monotonic() - started

    message = str(caught.value)
    assert elapsed < 2 * WINDOW + 1.0
    assert "downloading pkg/slow.bin of release 1.0.0 from the middleware" in message
    assert server.url in message
    assert "failed after 2 attempts: the transfer stalled: " in message
    assert "the response head timed out" in message
    assert len(server.trapped) == 2
    assert not item.dest.exists()


@pytest.mark.timeout(15)
def test_download_head_deadline_off_without_floor(stage: Path) -> None:
    # Two windows pass before the cancel, so a deadline would end it first.
    limits = replace(HEAD_LIMITS, low_speed_bytes=0)
    cancel = CancelLater(3 * WINDOW)
    try:
        with (
            HeadServer("dribble") as server,
            MiddlewareClient(server.url, limits=limits) as client,
            pytest.raises(SetupCancelledError),
        ):
            download_all(client, [regular_item(stage)], workers=1, cancel=cancel.event)
    finally:
        cancel.cancel_timer()

    assert len(server.trapped) == 1


@pytest.mark.timeout(15)
def test_json_head_trickle_times_out() -> None:
    started = time.monotonic()
    with (
        HeadServer("dribble") as server,
        MiddlewareClient(server.url, limits=HEAD_LIMITS) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        client.release_info(V1)
    elapsed = time.monotonic() - started

    assert elapsed < 2 * WINDOW + 1.0
    assert "the transfer stalled: the response head timed out" in str(caught.value)
    assert len(server.trapped) == 2


# A halt while the head is awaited


@pytest.mark.timeout(15)
def test_download_cancel_wakes_head_wait(stage: Path) -> None:
    cancel = CancelLater(0.5)
    try:
        with (
            HeadServer("silent") as server,
            MiddlewareClient(server.url, limits=PATIENT_LIMITS) as client,
            pytest.raises(SetupCancelledError),
        ):
            download_all(client, [regular_item(stage)], workers=1, cancel=cancel.event)
        returned = time.monotonic()
    finally:
        cancel.cancel_timer()

    assert server.trapped == ["/download/v1.0.0/pkg/slow.bin"]
    assert returned - cancel.set_at < 1.0


@pytest.mark.timeout(15)
def test_download_failure_wakes_head_wait(stage: Path) -> None:
    missing = DownloadItem(V1, "missing.py", stage / "missing.py", None, 7)
    started = time.monotonic()
    with (
        HeadServer("silent", trap_path="slow.bin") as server,
        MiddlewareClient(server.url, limits=PATIENT_LIMITS) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        download_all(client, [regular_item(stage), missing], workers=2)
    elapsed = time.monotonic() - started

    assert "file missing.py of release 1.0.0 not found" in str(caught.value)
    assert server.trapped == ["/download/v1.0.0/pkg/slow.bin"]
    assert elapsed < 1.0


def request_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "middleware-request"]


@pytest.mark.timeout(15)
def test_json_cancel_ends_head_wait() -> None:
    cancel = CancelLater(0.5)
    try:
        with (
            HeadServer("silent") as server,
            MiddlewareClient(
                server.url, limits=PATIENT_LIMITS, cancel=cancel.event
            ) as client,
        ):
            with pytest.raises(SetupCancelledError):
                client.release_info(V1)
            while request_threads() and time.monotonic() - cancel.set_at < 3.0:
                time.sleep(0.02)
            ended = time.monotonic()
    finally:
        cancel.cancel_timer()

    assert server.trapped == ["/codebase/v1.0.0"]
    assert request_threads() == []
    assert ended - cancel.set_at < 1.0


# The update transaction


BIG = 200 * 1024
OLD_FILES = {"main.py": "print('1.0.0')\n", "data/model.bin": os.urandom(BIG)}
NEW_FILES = {"main.py": "print('1.1.0')\n", "data/model.bin": os.urandom(BIG)}


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    versions = {"1.0.0": OLD_FILES, "1.1.0": NEW_FILES}
    return publish_releases(tmp_path / "releases", versions)


@pytest.mark.timeout(30)
def test_update_head_trickle_fails_cleanly(
    tmp_path: Path, releases: Path, server: MiddlewareHandle
) -> None:
    home = install_home(tmp_path / "home", server, "1.0.0")
    before = installed_tree(home)
    limits = replace(
        FAST_LIMITS,
        low_speed_bytes=1000,
        low_speed_seconds=WINDOW,
        max_retries=1,
        chunk_bytes=64 * 1024,
    )

    started = time.monotonic()
    with (
        HeadServer("dribble", upstream=server, trap_path="model.bin") as proxy,
        pytest.raises(MiddlewareError) as caught,
    ):
        update_in_process(home, proxy.url, "1.1.0", limits=limits)
    elapsed = time.monotonic() - started

    state = read_state(home)
    assert elapsed < 2 * WINDOW + 3.0
    assert caught.value.exit_code == ExitCode.FAILED
    assert "data/model.bin of release 1.1.0" in str(caught.value)
    assert "the response head timed out" in str(caught.value)
    assert state["overall_status"] == "failed"
    assert "data/model.bin of release 1.1.0" in state["error_details"]
    assert "the response head timed out" in state["error_details"]
    assert installed_version(home) == "1.0.0"
    assert installed_tree(home) == before
    assert before == tree_snapshot(releases / "1.0.0" / "files")
