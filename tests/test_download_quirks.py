"""Tests of download_all against server behaviours the reference middleware lacks.

Each test scripts a loopback server: a 200 in response to ``Range``, a wrong
``Content-Range``, 416, compressed bodies, bodies without ``Content-Length``.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.version import Version
from scripted_server import (
    ScriptedRequest,
    ScriptedResponse,
    ScriptedServer,
    parse_range_start,
)

from codemate_setup.client import MiddlewareClient
from codemate_setup.config import Limits
from codemate_setup.download import DownloadItem, download_all
from codemate_setup.errors import IntegrityError, MiddlewareError

V1 = Version("1.0.0")
DATA = random.Random(5).randbytes(300_000)
LIMITS = Limits(
    backoff_base=0.01,
    backoff_max=0.02,
    max_retries=3,
    connect_timeout=2.0,
    read_timeout=2.0,
    chunk_bytes=32 * 1024,
    disk_reserve_bytes=0,
)


def item(stage: Path, *, legacy: bool = False, data: bytes = DATA) -> DownloadItem:
    return DownloadItem(
        version=V1,
        path="data.bin",
        dest=stage / "data.bin",
        sha256=None if legacy else hashlib.sha256(data).hexdigest(),
        size=None if legacy else len(data),
    )


def cut_body(data: bytes, sent: int, headers: dict[str, str] | None = None):
    """Declare the whole length but send only ``sent`` bytes, then close."""
    return ScriptedResponse(
        headers={"Content-Length": str(len(data)), **(headers or {})},
        body=[data[:sent]],
        length=False,
        close=True,
    )


def partial_body(data: bytes, start: int, content_range: str) -> ScriptedResponse:
    return ScriptedResponse(
        status=206,
        headers={"Content-Range": content_range},
        body=data[start:],
    )


def run_download(server: ScriptedServer, stage: Path, **item_options):
    with MiddlewareClient(server.url, limits=LIMITS) as client:
        return download_all(client, [item(stage, **item_options)])


def test_full_body_to_range_restarts_cleanly(tmp_path) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        if request.number == 0:
            return cut_body(DATA, 100_000)
        return ScriptedResponse(body=DATA)

    with ScriptedServer(script) as server:
        stats = run_download(server, tmp_path)

    assert (tmp_path / "data.bin").read_bytes() == DATA
    assert server.requests[1].headers["range"] == "bytes=100000-"
    assert stats.resumes == 0
    assert stats.bytes_downloaded == 100_000 + len(DATA)


def test_resume_with_matching_range(tmp_path) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        start = parse_range_start(request.headers.get("range"))
        if start is None:
            return cut_body(DATA, 100_000)
        return partial_body(DATA, start, f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")

    with ScriptedServer(script) as server:
        stats = run_download(server, tmp_path)

    assert (tmp_path / "data.bin").read_bytes() == DATA
    assert stats.resumes == 1
    assert stats.bytes_downloaded == len(DATA)


@pytest.mark.parametrize(
    "content_range",
    [
        "bytes 0-299999/300000",
        "bytes 100000-199999/300000",
        "bytes 100000-299999/999999",
        "bytes 100000-299999/*",
        "garbage",
    ],
    ids=["wrong-start", "short-end", "wrong-total", "unknown-total", "invalid"],
)
def test_mismatched_content_range_restarts(tmp_path, content_range: str) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        start = parse_range_start(request.headers.get("range"))
        if request.number == 0:
            return cut_body(DATA, 100_000)
        if start is not None:
            return partial_body(DATA, 100_000, content_range)
        return ScriptedResponse(body=DATA)

    with ScriptedServer(script) as server:
        stats = run_download(server, tmp_path)

    assert (tmp_path / "data.bin").read_bytes() == DATA
    assert [parse_range_start(r.headers.get("range")) for r in server.requests] == [
        None,
        100_000,
        None,
    ]
    assert stats.resumes == 0


def test_range_not_satisfiable_restarts(tmp_path) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        if request.number == 0:
            return cut_body(DATA, 100_000)
        if "range" in request.headers:
            return ScriptedResponse(
                status=416, headers={"Content-Range": f"bytes */{len(DATA)}"}
            )
        return ScriptedResponse(body=DATA)

    with ScriptedServer(script) as server:
        run_download(server, tmp_path)

    assert (tmp_path / "data.bin").read_bytes() == DATA
    assert len(server.requests) == 3


def test_compressed_body_rejected(tmp_path) -> None:
    compressed = gzip.compress(DATA)

    def script(request: ScriptedRequest) -> ScriptedResponse:
        return ScriptedResponse(headers={"Content-Encoding": "gzip"}, body=compressed)

    with ScriptedServer(script) as server, pytest.raises(MiddlewareError) as caught:
        run_download(server, tmp_path)

    assert "with Content-Encoding 'gzip', but the client requested identity" in str(
        caught.value
    )
    assert len(server.requests) == 1
    assert not (tmp_path / "data.bin").exists()


def test_download_requests_identity(tmp_path) -> None:
    with ScriptedServer(lambda request: ScriptedResponse(body=DATA)) as server:
        run_download(server, tmp_path)

    assert server.requests[0].headers["accept-encoding"] == "identity"


def test_longer_body_than_declared_caught(tmp_path) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        return ScriptedResponse(body=DATA + b"trailing junk", length=False)

    with ScriptedServer(script) as server, pytest.raises(IntegrityError) as caught:
        run_download(server, tmp_path)

    assert f"expected {len(DATA)} bytes, got more bytes than declared" in str(
        caught.value
    )
    assert len(server.requests) == 2
    assert list(tmp_path.iterdir()) == []


def test_shorter_body_without_length_caught(tmp_path) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        return ScriptedResponse(body=DATA[:1000], length=False)

    with ScriptedServer(script) as server, pytest.raises(MiddlewareError) as caught:
        run_download(server, tmp_path)

    assert f"the connection closed after 1000 of {len(DATA)} bytes" in str(caught.value)
    assert not (tmp_path / "data.bin").exists()


def test_legacy_empty_length_accepted(tmp_path) -> None:
    with ScriptedServer(lambda request: ScriptedResponse(body=b"")) as server:
        run_download(server, tmp_path, legacy=True)

    assert (tmp_path / "data.bin").read_bytes() == b""


def test_legacy_empty_body_rejected(tmp_path) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        return ScriptedResponse(body=b"", length=False)

    with ScriptedServer(script) as server, pytest.raises(IntegrityError) as caught:
        run_download(server, tmp_path, legacy=True)

    assert "expected a non-empty file, got an empty body" in str(caught.value)
    assert len(server.requests) == 2


def test_legacy_unbounded_body_stopped(tmp_path) -> None:
    def endless(request: ScriptedRequest) -> ScriptedResponse:
        def chunks() -> Iterator[bytes]:
            while True:
                yield b"x" * 65536

        return ScriptedResponse(body=chunks())

    limits = Limits(max_file_bytes=100_000, chunk_bytes=32 * 1024)
    with (
        ScriptedServer(endless) as server,
        MiddlewareClient(server.url, limits=limits) as client,
        pytest.raises(IntegrityError) as caught,
    ):
        download_all(client, [item(tmp_path, legacy=True)])

    assert "data.bin of release 1.0.0 must be at most 100000 bytes" in str(caught.value)
    assert "the server sent more" in str(caught.value)


def test_legacy_declared_length_over_limit(tmp_path) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        return ScriptedResponse(headers={"Content-Length": "5000000"}, body=[b"x"])

    limits = Limits(max_file_bytes=100_000)
    with (
        ScriptedServer(script) as server,
        MiddlewareClient(server.url, limits=limits) as client,
        pytest.raises(IntegrityError) as caught,
    ):
        download_all(client, [item(tmp_path, legacy=True)])

    assert "must be at most 100000 bytes, but its length is 5000000" in str(
        caught.value
    )


def test_legacy_resume_sends_if_range(tmp_path) -> None:
    etag = '"v1-data"'

    def script(request: ScriptedRequest) -> ScriptedResponse:
        start = parse_range_start(request.headers.get("range"))
        if start is None:
            return cut_body(DATA, 100_000, {"ETag": etag})
        return partial_body(DATA, start, f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")

    with ScriptedServer(script) as server:
        stats = run_download(server, tmp_path, legacy=True)

    assert (tmp_path / "data.bin").read_bytes() == DATA
    assert server.requests[1].headers["if-range"] == etag
    assert stats.resumes == 1


def test_legacy_without_validator_restarts(tmp_path) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        if request.number == 0:
            return cut_body(DATA, 100_000)
        return ScriptedResponse(body=DATA)

    with ScriptedServer(script) as server:
        run_download(server, tmp_path, legacy=True)

    assert (tmp_path / "data.bin").read_bytes() == DATA
    assert "range" not in server.requests[1].headers


def test_downloads_use_parallel_connections(tmp_path) -> None:
    def slow(request: ScriptedRequest) -> ScriptedResponse:
        def chunks() -> Iterator[bytes]:
            time.sleep(0.3)
            yield b"payload"

        return ScriptedResponse(headers={"Content-Length": "7"}, body=chunks())

    digest = hashlib.sha256(b"payload").hexdigest()
    items = [
        DownloadItem(V1, f"f{n}.txt", tmp_path / f"f{n}.txt", digest, 7)
        for n in range(6)
    ]
    with (
        ScriptedServer(slow) as server,
        MiddlewareClient(server.url, limits=LIMITS) as client,
    ):
        download_all(client, items, workers=3)

    assert server.max_active > 1
    assert all((tmp_path / f"f{n}.txt").read_bytes() == b"payload" for n in range(6))


def test_download_redirect_to_remote_http_rejected(tmp_path) -> None:
    def redirect(request: ScriptedRequest) -> ScriptedResponse:
        return ScriptedResponse(
            status=307, headers={"Location": "http://cdn.example.com/data.bin?sig=s"}
        )

    with ScriptedServer(redirect) as server, pytest.raises(MiddlewareError) as caught:
        run_download(server, tmp_path)

    assert "http://cdn.example.com/data.bin?sig=***, which is not https" in str(
        caught.value
    )
    assert len(server.requests) == 1


# The floor on download speed

SLOW_FLOOR = Limits(
    backoff_base=0.01,
    backoff_max=0.02,
    max_retries=0,
    connect_timeout=2.0,
    read_timeout=2.0,
    chunk_bytes=32 * 1024,
    disk_reserve_bytes=0,
    low_speed_bytes=1000,
    low_speed_seconds=0.3,
)
SMALL_BODY = bytes(range(250)) * 2


def slow_ending(data: bytes, tail: bytes = b"") -> Iterator[bytes]:
    """Send all but 100 bytes at once, the rest after a slow window, then ``tail``."""
    yield data[:-100]
    time.sleep(0.4)
    yield data[-100:]
    if tail:
        time.sleep(0.1)
        yield tail


@pytest.mark.parametrize("length", [True, False], ids=["length", "no-length"])
def test_slow_last_window_completes(tmp_path, length: bool) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        headers = {"Content-Length": str(len(SMALL_BODY))} if length else {}
        return ScriptedResponse(
            headers=headers,
            body=slow_ending(SMALL_BODY),
            length=False,
            close=not length,
        )

    # No sha256, so the file takes the streaming path at any size.
    planned = DownloadItem(
        V1, "data.bin", tmp_path / "data.bin", None, len(SMALL_BODY) if length else None
    )
    with (
        ScriptedServer(script) as server,
        MiddlewareClient(server.url, limits=SLOW_FLOOR) as client,
    ):
        download_all(client, [planned])

    assert planned.dest.read_bytes() == SMALL_BODY
    assert len(server.requests) == 1


def test_slow_window_before_more_bytes_stalls(tmp_path) -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        return ScriptedResponse(
            body=slow_ending(SMALL_BODY, tail=b"more"), length=False, close=True
        )

    with (
        ScriptedServer(script) as server,
        MiddlewareClient(server.url, limits=SLOW_FLOOR) as client,
        pytest.raises(MiddlewareError, match="the transfer stalled: 500 bytes"),
    ):
        download_all(client, [item(tmp_path, legacy=True)])
