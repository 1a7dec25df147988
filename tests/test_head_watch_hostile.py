"""Hostile servers against the response-head deadline of HeadWatchAdapter.

Each test starts raw-socket servers on 127.0.0.1. A request through the
adapter must fail as stalled only when its own head is one window late, and
the watch must leave no waiter and no timer thread behind.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from raw_server import ConnectionServer, Handler

from codemate_setup.download_stall import HeadStalled
from codemate_setup.head_watch import HEAD_WATCH, HeadWatchAdapter

WINDOW = 0.6
BODY = b"payload"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"


def read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            raise ConnectionError("the client closed the connection")
        data += chunk
    return data


def serve_keepalive(connection: socket.socket, head_delays: list[float]) -> None:
    """Respond to the requests on one connection, each head after its delay."""
    for delay in head_delays:
        read_request(connection)
        time.sleep(delay)
        connection.sendall(HEAD + BODY)


@contextlib.contextmanager
def raw_server(handler: Handler) -> Iterator[ConnectionServer]:
    def serve_quietly(connection: socket.socket, index: int) -> None:
        # A client that gives up resets or closes the connection.
        with contextlib.suppress(OSError):
            handler(connection, index)

    with ConnectionServer(serve_quietly) as server:
        yield server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    http = requests.Session()
    adapter = HeadWatchAdapter(
        low_speed_bytes=1000, low_speed_seconds=WINDOW, max_retries=0
    )
    http.mount("http://", adapter)
    yield http
    http.close()


def timer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "response-head-timer"]


def wait_timer_ended(timeout: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while timer_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not timer_threads()


def is_stall(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, HeadStalled):
            return True
        seen = seen.__cause__ or seen.__context__ or _reason(seen)
    return False


def _reason(error: BaseException) -> BaseException | None:
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    args = getattr(error, "args", ())
    return next((a for a in args if isinstance(a, BaseException)), None)


def test_head_just_before_window_succeeds(session):
    with raw_server(lambda c, i: serve_keepalive(c, [WINDOW * 0.5])) as server:
        response = session.get(server.url(), timeout=5)
    assert response.content == BODY


def test_head_just_after_window_stalls(session):
    with (
        raw_server(lambda c, i: serve_keepalive(c, [WINDOW * 1.5])) as server,
        pytest.raises(requests.RequestException) as caught,
    ):
        session.get(server.url(), timeout=5)
    assert is_stall(caught.value)


def test_keepalive_reuse_after_fired_deadline(session):
    delays = {0: [WINDOW * 1.5], 1: [0.0, WINDOW * 0.5, 0.0]}
    with raw_server(lambda c, i: serve_keepalive(c, delays.get(i, [0.0]))) as server:
        with pytest.raises(requests.RequestException):
            session.get(server.url(), timeout=5)
        bodies = [session.get(server.url(), timeout=5).content for _ in range(3)]
        connections = server.connections
    assert bodies == [BODY, BODY, BODY]
    assert connections == 2


def test_late_timer_spares_reused_connection(session):
    # Each head comes just before its window ends, on one connection, so a
    # timer left from an earlier request would shut down a later one.
    delays = [WINDOW * 0.8] * 4
    with raw_server(lambda c, i: serve_keepalive(c, delays)) as server:
        bodies = [session.get(server.url(), timeout=5).content for _ in delays]
        connections = server.connections
    assert bodies == [BODY] * 4
    assert connections == 1


def test_parallel_requests_only_stalled_one_fails(session):
    def handler(connection: socket.socket, index: int) -> None:
        request = read_request(connection)
        if b"/stall" in request:
            time.sleep(WINDOW * 3)
            return
        time.sleep(WINDOW * 0.3)
        connection.sendall(HEAD + BODY)

    results: dict[int, object] = {}

    def fetch(number: int, url: str) -> None:
        http = requests.Session()
        http.mount(
            "http://", HeadWatchAdapter(low_speed_bytes=1000, low_speed_seconds=WINDOW)
        )
        try:
            results[number] = http.get(url, timeout=10).content
        except requests.RequestException as e:
            results[number] = e
        finally:
            http.close()

    with raw_server(handler) as server:
        threads = [
            threading.Thread(
                target=fetch, args=(n, server.url("/stall" if n == 3 else "/ok"))
            )
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    failed = [n for n, result in results.items() if result != BODY]
    assert failed == [3]
    assert is_stall(results[3])


def test_redirect_second_head_stalls(session):
    with raw_server(lambda c, i: time.sleep(WINDOW * 3)) as target:

        def redirect(connection: socket.socket, index: int) -> None:
            read_request(connection)
            location = target.url().encode()
            connection.sendall(
                b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n"
                b"Content-Length: 0\r\n\r\n"
            )

        with raw_server(redirect) as first:
            started = time.monotonic()
            with pytest.raises(requests.RequestException) as caught:
                session.get(first.url(), timeout=5)
            elapsed = time.monotonic() - started
    assert is_stall(caught.value)
    assert elapsed < WINDOW * 2.5


def test_continue_then_stall_fails(session):
    def handler(connection: socket.socket, index: int) -> None:
        read_request(connection)
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(WINDOW * 3)

    with (
        raw_server(handler) as server,
        pytest.raises(requests.RequestException) as caught,
    ):
        session.get(server.url(), timeout=5)
    assert is_stall(caught.value)


def test_continue_then_head_succeeds(session):
    def handler(connection: socket.socket, index: int) -> None:
        read_request(connection)
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(WINDOW * 0.3)
        connection.sendall(HEAD + BODY)

    with raw_server(handler) as server:
        response = session.get(server.url(), timeout=5)
    assert response.content == BODY


def test_watch_leaves_nothing_after_requests():
    # A timer left by an earlier test, with an earlier deadline, would hide
    # one that waits for the long window below.
    assert wait_timer_ended(WINDOW * 3)
    http = requests.Session()
    # A long window: the timer must not wait for it once no request is left.
    http.mount(
        "http://", HeadWatchAdapter(low_speed_bytes=1000, low_speed_seconds=30.0)
    )
    with raw_server(lambda c, i: serve_keepalive(c, [0.0] * 50)) as server:
        for _ in range(50):
            http.get(server.url(), timeout=5)
    http.close()
    assert not HEAD_WATCH._waiting
    assert wait_timer_ended()
