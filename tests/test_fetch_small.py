"""Tests of the small-file transport of download_all (codemate_setup.fetch_small).

The reference middleware injects the usual faults into small files. A raw
loopback server produces what the middleware cannot: idle connections closed
by the server, bytes beyond the declared body, chunked bodies.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.version import Version

from codemate_setup.client import USER_AGENT, MiddlewareClient
from codemate_setup.config import Limits
from codemate_setup.download import DownloadItem, download_all
from codemate_setup.errors import IntegrityError, MiddlewareError, SetupCancelledError
from codemate_setup.fetch_small import SmallFileTransport, parse_head
from codemate_setup.middleware import FaultConfig
from codemate_setup.publish import publish_release

V1 = Version("1.0.0")
FILES = {f"pkg/m{n}.py": f"value = {n}\n".encode() * 50 for n in range(6)}
LIMITS = Limits(
    backoff_base=0.01,
    backoff_max=0.02,
    max_retry_after=0.1,
    max_retries=3,
    connect_timeout=2.0,
    read_timeout=1.0,
    chunk_bytes=64 * 1024,
    disk_reserve_bytes=0,
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def items_for(stage: Path, paths: list[str] | None = None) -> list[DownloadItem]:
    return [
        DownloadItem(V1, path, stage / path, sha256(FILES[path]), len(FILES[path]))
        for path in paths or list(FILES)
    ]


def downloads(handle) -> list:
    return [record for record in handle.requests if record.path.startswith("/download")]


@pytest.fixture
def served(tmp_path, make_tree, start_middleware):
    folder = tmp_path / "releases"
    publish_release(make_tree(tmp_path / "src", FILES), "1.0.0", folder, durable=False)
    return start_middleware(folder)


@pytest.fixture
def client(served):
    with MiddlewareClient(served.url, limits=LIMITS) as middleware_client:
        yield middleware_client


@pytest.fixture
def stage(tmp_path) -> Path:
    return tmp_path / "staging"


def assert_all_staged(stage: Path) -> None:
    for path, data in FILES.items():
        assert (stage / path).read_bytes() == data


# Normal downloads


def test_small_files_one_request_each(client, served, stage) -> None:
    stats = download_all(client, items_for(stage))

    assert_all_staged(stage)
    assert len(downloads(served)) == len(FILES)
    assert stats.files_downloaded == len(FILES)
    assert stats.bytes_downloaded == sum(len(data) for data in FILES.values())


def test_small_files_leave_no_part_files(client, stage) -> None:
    download_all(client, items_for(stage))

    assert list(stage.rglob("*.part*")) == []


def test_small_files_recorded_as_verified(client, stage) -> None:
    stats = download_all(client, items_for(stage))

    dest = stage / "pkg/m0.py"
    assert stats.verified[dest].sha256 == sha256(FILES["pkg/m0.py"])


def test_small_files_send_repo_query(served, stage) -> None:
    with MiddlewareClient(served.url, repo="app", limits=LIMITS) as client:
        download_all(client, items_for(stage, ["pkg/m1.py"]))

    record = downloads(served)[0]
    assert (record.path, record.query) == ("/download/v1.0.0/pkg/m1.py", "repo=app")


def test_transport_used_for_plain_http(served) -> None:
    with MiddlewareClient(served.url, limits=LIMITS) as client:
        assert SmallFileTransport.for_client(client) is not None


def test_transport_not_used_for_https() -> None:
    with MiddlewareClient("https://127.0.0.1:9", limits=LIMITS) as client:
        assert SmallFileTransport.for_client(client) is None


def test_transport_not_used_through_a_proxy(served, monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with MiddlewareClient(served.url, limits=LIMITS) as client:
        assert SmallFileTransport.for_client(client) is None


# Faults of the reference middleware on small files


def test_small_file_503_waits_and_retries(client, served, stage) -> None:
    served.set_faults(FaultConfig(error_status=503, retry_after=0.05, error_count=1))

    stats = download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert_file(stage, "pkg/m0.py")
    assert stats.retries == 1
    assert len(downloads(served)) == 2


def test_small_file_persistent_503_fails(client, served, stage) -> None:
    served.set_faults(FaultConfig(error_status=503, error_count=100))

    with pytest.raises(MiddlewareError, match="failed after 4 attempts: HTTP 503"):
        download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert len(downloads(served)) == 4


def test_small_file_missing_not_retried(client, served, stage) -> None:
    item = DownloadItem(V1, "pkg/none.py", stage / "pkg/none.py", sha256(b"x"), 1)

    with pytest.raises(MiddlewareError, match="not found on the middleware"):
        download_all(client, [item])

    assert len(downloads(served)) == 1


def test_small_file_dropped_body_completes(client, served, stage) -> None:
    served.set_faults(FaultConfig(drop_after_bytes=100, fault_count=1))

    stats = download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert_file(stage, "pkg/m0.py")
    assert stats.retries == 1


def test_small_file_dropped_body_resumes_from_received_bytes(
    client, served, stage
) -> None:
    served.set_faults(FaultConfig(drop_after_bytes=100, fault_count=1))

    download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert [record.range_header for record in downloads(served)] == [
        None,
        "bytes=100-",
    ]


def test_small_file_corrupt_once_restarts(client, served, stage) -> None:
    served.set_faults(FaultConfig(corrupt_bytes=True, fault_count=1))

    stats = download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert_file(stage, "pkg/m0.py")
    assert stats.retries == 1


def test_small_file_always_corrupt_fails(client, served, stage) -> None:
    served.set_faults(FaultConfig(corrupt_bytes=True))

    with pytest.raises(IntegrityError, match="does not match its manifest"):
        download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert not (stage / "pkg/m0.py").exists()


def test_small_file_counts_bytes_received_once(client, served, stage) -> None:
    served.set_faults(FaultConfig(corrupt_bytes=True, fault_count=1))

    stats = download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert stats.bytes_downloaded == 2 * len(FILES["pkg/m0.py"])


@pytest.mark.parametrize("delta", [-1, 1])
def test_small_file_wrong_length_once_recovers(client, served, stage, delta) -> None:
    served.set_faults(FaultConfig(wrong_length=delta, fault_count=1))

    download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert_file(stage, "pkg/m0.py")


@pytest.mark.parametrize("delta", [-1, 1])
def test_small_file_wrong_length_always_fails(client, served, stage, delta) -> None:
    served.set_faults(FaultConfig(wrong_length=delta))

    with pytest.raises(IntegrityError):
        download_all(client, items_for(stage, ["pkg/m0.py"]))


def test_small_file_stall_times_out_then_completes(served, stage) -> None:
    served.set_faults(
        FaultConfig(stall_after_bytes=10, stall_seconds=3.0, fault_count=1)
    )
    limits = Limits(
        backoff_base=0.01, backoff_max=0.02, read_timeout=0.3, disk_reserve_bytes=0
    )

    with MiddlewareClient(served.url, limits=limits) as client:
        stats = download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert_file(stage, "pkg/m0.py")
    assert stats.retries == 1


def test_small_file_cancel_stops_a_stalled_read(client, served, stage) -> None:
    served.set_faults(FaultConfig(stall_after_bytes=10, stall_seconds=30.0))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    slow = Limits(read_timeout=30.0, disk_reserve_bytes=0)

    with (
        MiddlewareClient(served.url, limits=slow) as slow_client,
        pytest.raises(SetupCancelledError),
    ):
        download_all(slow_client, items_for(stage, ["pkg/m0.py"]), cancel=cancel)


def test_small_file_credentials_sent_and_never_logged(stage, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = RawServer(lambda request: respond(b"payload"))
    url = f"http://user:s3cret@127.0.0.1:{server.port}"
    item = DownloadItem(V1, "a.py", stage / "a.py", sha256(b"payload"), 7)

    with server, MiddlewareClient(url, limits=LIMITS) as client:
        download_all(client, [item])

    expected = base64.b64encode(b"user:s3cret").decode()
    assert f"Authorization: Basic {expected}" in server.requests[0]
    assert "s3cret" not in caplog.text


def assert_file(stage: Path, path: str) -> None:
    assert (stage / path).read_bytes() == FILES[path]


# Connection handling, against a raw server


def respond(body: bytes, *, extra: bytes = b"", headers: str = "") -> bytes:
    head = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{headers}\r\n").encode()
    return head + body + extra


class RawServer:
    """A loopback server that sends the bytes from ``reply`` for each request.

    ``reply`` gets the raw request head and returns the bytes to send, or
    None to close the connection without a response.
    """

    def __init__(self, reply: Callable[[str], bytes | None]) -> None:
        self.reply = reply
        self.requests: list[str] = []
        self.connections = 0
        self.close_after_each = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.requests.append(head.decode("latin-1"))
                answer = self.reply(head.decode("latin-1"))
                if answer is None:
                    return
                conn.sendall(answer)
                if self.close_after_each:
                    # Close as an idle keep-alive connection is closed.
                    time.sleep(0.05)
                    return

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()


def fetch_from(server: RawServer, items: list[DownloadItem]):
    with MiddlewareClient(f"http://127.0.0.1:{server.port}", limits=LIMITS) as client:
        return download_all(client, items, workers=1)


def raw_items(stage: Path, count: int, body: bytes = b"payload") -> list[DownloadItem]:
    return [
        DownloadItem(V1, f"f{n}.py", stage / f"f{n}.py", sha256(body), len(body))
        for n in range(count)
    ]


def test_one_connection_carries_every_file(stage) -> None:
    with RawServer(lambda request: respond(b"payload")) as server:
        fetch_from(server, raw_items(stage, 5))

    assert server.connections == 1


def test_small_file_request_is_one_lean_get(stage) -> None:
    with RawServer(lambda request: respond(b"payload")) as server:
        fetch_from(server, raw_items(stage, 1))

    assert server.requests == [
        f"GET /download/v1.0.0/f0.py HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"User-Agent: {USER_AGENT}\r\nAccept-Encoding: identity"
    ]


def test_idle_connection_closed_by_server_reopened(stage) -> None:
    with RawServer(lambda request: respond(b"payload")) as server:
        server.close_after_each = True
        with MiddlewareClient(f"http://127.0.0.1:{server.port}", limits=LIMITS) as c:
            stats = download_all(c, raw_items(stage, 3), workers=1)

    assert stats.retries == 0
    assert len(server.requests) == 3


def test_bytes_beyond_body_drop_the_connection(stage) -> None:
    with RawServer(lambda request: respond(b"payload", extra=b"junk")) as server:
        fetch_from(server, raw_items(stage, 3))

    assert server.connections == 3


def test_chunked_response_goes_through_requests(stage) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"7\r\npayload\r\n0\r\n\r\n"
    )
    with RawServer(lambda request: chunked) as server:
        fetch_from(server, raw_items(stage, 2))

    assert (stage / "f1.py").read_bytes() == b"payload"


def test_redirect_to_remote_http_rejected(stage) -> None:
    redirect = (
        b"HTTP/1.1 307 Temporary Redirect\r\n"
        b"Location: http://cdn.example.com/f0.py?sig=s\r\nContent-Length: 0\r\n\r\n"
    )
    with (
        RawServer(lambda request: redirect) as server,
        pytest.raises(MiddlewareError, match="which is not https"),
    ):
        fetch_from(server, raw_items(stage, 1))

    assert len(server.requests) == 1


def test_closed_without_response_retried(stage) -> None:
    answers = iter([None, respond(b"payload")])
    with RawServer(lambda request: next(answers)) as server:
        stats = fetch_from(server, raw_items(stage, 1))

    assert stats.retries == 1
    assert (stage / "f0.py").read_bytes() == b"payload"


def test_header_with_line_break_never_sent(stage) -> None:
    # A hostile ETag sent back in If-Range must not split the request.
    transport_headers = {"If-Range": '"a"\r\nX-Injected: 1'}
    with MiddlewareClient("http://127.0.0.1:9", limits=LIMITS) as client:
        transport = SmallFileTransport.for_client(client)
        assert transport is not None
        with pytest.raises(ValueError, match="invalid value"):
            transport.request_bytes(client.base_url + "/x", transport_headers)


# Response heads


def test_parse_head_reads_status_and_length() -> None:
    head = parse_head(b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\nETag: "x"')

    assert (head.status, head.length, head.keep_alive) == (200, 12, True)


def test_parse_head_close_ends_keep_alive() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close")

    assert head.keep_alive is False


def test_parse_head_without_length_reads_to_close() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nServer: x")

    assert (head.length, head.keep_alive) == (None, False)


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK",
        b"HTTP/1.1 2000 OK",
        b"ICY 200 OK",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 200 OK\r\n folded",
        b"HTTP/1.1 200 OK\r\nno colon",
    ],
)
def test_parse_head_rejects_invalid_heads(data: bytes) -> None:
    with pytest.raises(http.client.HTTPException):
        parse_head(data)
