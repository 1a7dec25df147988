"""Tests of the body transfers: read into Python, or spliced by the kernel."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from download_support import fast_limits, reject_file_splice, sha256
from packaging.version import Version

from codemate_setup import download_body
from codemate_setup.client import MiddlewareClient
from codemate_setup.download import DownloadItem, download_all
from codemate_setup.download_body import SplicedBody, SpliceUnsupported
from codemate_setup.download_hash import BackgroundHasher
from codemate_setup.errors import IntegrityError
from codemate_setup.middleware import FaultConfig
from codemate_setup.publish import publish_release

pytestmark = pytest.mark.skipif(
    not download_body.SPLICE_SUPPORTED, reason="os.splice needs Linux"
)

CHUNK = 64 * 1024
BIG = random.Random(31).randbytes(48 * CHUNK + 5)
# The first read returns what arrived with the head, as little as one byte,
# and a rest of more than one chunk is spliced. So a body of two chunks may or
# may not be spliced, but one of a chunk and a byte never is.
CHUNK_AND_BYTE = random.Random(32).randbytes(CHUNK + 1)
FILES = {"big.bin": BIG, "small.bin": CHUNK_AND_BYTE}
FAST = fast_limits(chunk_bytes=CHUNK)
V1 = Version("1.0.0")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def connected() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback TCP connection: the receiving end, then the sending end."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
    with receiver, sender:
        yield receiver, sender


def send_in_thread(sock: socket.socket, data: bytes) -> threading.Thread:
    def send() -> None:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def splice_all(body: SplicedBody, handle, offset: int, hasher: BackgroundHasher) -> int:
    """Move the whole body into ``handle`` from ``offset``; return the bytes moved."""
    moved = 0
    while size := body.receive(CHUNK):
        body.store(handle, offset + moved, hasher)
        moved += size
    return moved


def splice_into(path: Path, receiver: socket.socket, prefix: bytes) -> tuple[int, str]:
    """Splice a whole body into ``path`` after ``prefix``; return bytes and sha256."""
    path.write_bytes(prefix)
    with open(path, "r+b") as handle:
        region_fd = os.open(f"/proc/self/fd/{handle.fileno()}", os.O_RDONLY)
        hasher = BackgroundHasher(CHUNK, initial=hashlib.sha256(prefix))
        body = SplicedBody(receiver, region_fd)
        try:
            moved = splice_all(body, handle, len(prefix), hasher)
            return moved, hasher.hexdigest()
        finally:
            body.close()
            os.close(region_fd)


# SplicedBody on a real connection


def test_spliced_body_writes_at_offset_and_hashes(connected, tmp_path) -> None:
    receiver, sender = connected
    prefix = b"p" * 100
    path = tmp_path / "file.part"
    receiver.settimeout(5)
    thread = send_in_thread(sender, BIG)

    moved, digest = splice_into(path, receiver, prefix)
    thread.join()

    assert moved == len(BIG)
    assert path.read_bytes() == prefix + BIG
    assert digest == sha256(prefix + BIG)


def test_spliced_body_receive_times_out(connected, tmp_path) -> None:
    receiver, _ = connected
    receiver.settimeout(0.2)
    body = SplicedBody(receiver, -1)
    started = time.monotonic()

    with pytest.raises(TimeoutError):
        body.receive(CHUNK)

    assert time.monotonic() - started >= 0.2
    body.close()


def test_spliced_body_receive_returns_zero_at_end(connected) -> None:
    receiver, sender = connected
    receiver.settimeout(5)
    sender.shutdown(socket.SHUT_WR)
    body = SplicedBody(receiver, -1)

    assert body.receive(CHUNK) == 0
    body.close()


def test_spliced_body_receive_wakes_on_shutdown(connected) -> None:
    receiver, _ = connected
    receiver.settimeout(10)
    body = SplicedBody(receiver, -1)
    timer = threading.Timer(0.2, receiver.shutdown, (socket.SHUT_RDWR,))
    timer.start()
    started = time.monotonic()

    assert body.receive(CHUNK) == 0
    assert time.monotonic() - started < 5
    body.close()


def test_spliced_body_first_einval_is_unsupported(connected, monkeypatch) -> None:
    receiver, sender = connected
    sender.sendall(b"abc")
    body = SplicedBody(receiver, -1)
    monkeypatch.setattr(download_body.os, "splice", einval_splice)

    with pytest.raises(SpliceUnsupported):
        body.receive(CHUNK)
    assert receiver.recv(3) == b"abc"
    body.close()


def test_spliced_body_store_falls_back_to_write(
    connected, tmp_path, monkeypatch
) -> None:
    receiver, sender = connected
    receiver.settimeout(5)
    thread = send_in_thread(sender, BIG)
    path = tmp_path / "file.part"
    reject_file_splice(monkeypatch)

    moved, digest = splice_into(path, receiver, b"")
    thread.join()

    assert moved == len(BIG)
    assert path.read_bytes() == BIG
    assert digest == sha256(BIG)


def einval_splice(*args, **kwargs) -> int:
    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))


# Downloads through the reference middleware


@pytest.fixture
def served(tmp_path, make_tree, start_middleware):
    tree = make_tree(tmp_path / "src", FILES)
    publish_release(tree, "1.0.0", tmp_path / "releases", durable=False)
    return start_middleware(tmp_path / "releases")


@pytest.fixture
def stage(tmp_path) -> Path:
    return tmp_path / "staging" / "files"


def item_for(stage: Path, path: str, *, sized: bool = True) -> DownloadItem:
    data = FILES[path]
    return DownloadItem(
        version=V1,
        path=path,
        dest=stage / path,
        sha256=sha256(data) if sized else None,
        size=len(data) if sized else None,
    )


def test_large_plain_body_is_spliced_after_first_chunk(served, stage) -> None:
    with MiddlewareClient(served.url, limits=FAST) as client:
        stats = download_all(client, [item_for(stage, "big.bin")])

    assert (stage / "big.bin").read_bytes() == BIG
    # The first read takes what arrived with the head, up to one chunk.
    assert len(BIG) - CHUNK <= stats.bytes_spliced < len(BIG)


def fd_links() -> list[str]:
    """Return what each open descriptor of this process leads to."""
    links = []
    for name in os.listdir("/proc/self/fd"):
        # The descriptor that listed the folder is closed by now.
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(f"/proc/self/fd/{name}"))
    return links


def test_spliced_body_opens_part_file_once(served, stage, monkeypatch) -> None:
    opened: list[int] = []
    real_store = SplicedBody.store

    def count_then_store(self, handle, offset, hasher) -> None:
        opened.append(sum(link.endswith("big.bin.part") for link in fd_links()))
        real_store(self, handle, offset, hasher)

    monkeypatch.setattr(SplicedBody, "store", count_then_store)
    with MiddlewareClient(served.url, limits=FAST) as client:
        download_all(client, [item_for(stage, "big.bin")])

    assert opened
    assert max(opened) == 1


def test_unsized_item_body_is_spliced(served, stage) -> None:
    with MiddlewareClient(served.url, limits=FAST) as client:
        stats = download_all(client, [item_for(stage, "big.bin", sized=False)])

    assert (stage / "big.bin").read_bytes() == BIG
    assert len(BIG) - CHUNK <= stats.bytes_spliced < len(BIG)


def test_body_of_chunk_and_byte_is_read(served, stage) -> None:
    with MiddlewareClient(served.url, limits=FAST) as client:
        stats = download_all(client, [item_for(stage, "small.bin")])

    assert (stage / "small.bin").read_bytes() == CHUNK_AND_BYTE
    assert stats.bytes_spliced == 0


def test_spliced_body_stall_resumes_intact(served, stage) -> None:
    served.set_faults(
        FaultConfig(stall_after_bytes=10 * CHUNK + 7, stall_seconds=3.0, fault_count=1)
    )
    limits = fast_limits(chunk_bytes=CHUNK, read_timeout=0.3)

    with MiddlewareClient(served.url, limits=limits) as client:
        stats = download_all(client, [item_for(stage, "big.bin")])

    assert (stage / "big.bin").read_bytes() == BIG
    assert stats.resumes == 1
    # Each response reads its first chunk and splices the rest.
    assert len(BIG) - 2 * CHUNK <= stats.bytes_spliced < len(BIG)


def test_spliced_body_corrupt_bytes_fail_the_hash(served, stage) -> None:
    served.set_faults(FaultConfig(corrupt_bytes=True))

    with (
        MiddlewareClient(served.url, limits=FAST) as client,
        pytest.raises(IntegrityError) as caught,
    ):
        download_all(client, [item_for(stage, "big.bin")])

    assert f"expected sha256 {sha256(BIG)}" in str(caught.value)
    assert not (stage / "big.bin").exists()


def test_unspliceable_socket_body_is_read(served, stage, monkeypatch) -> None:
    monkeypatch.setattr(download_body.os, "splice", einval_splice)

    with MiddlewareClient(served.url, limits=FAST) as client:
        stats = download_all(client, [item_for(stage, "big.bin")])

    assert (stage / "big.bin").read_bytes() == BIG
    assert stats.bytes_spliced == 0
    assert stats.retries == 0


WITHOUT_FCNTL = """
import sys

class NoFcntl:
    # Windows has no fcntl module.
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ModuleNotFoundError("No module named 'fcntl'")
        return None

sys.modules.pop("fcntl", None)
sys.meta_path.insert(0, NoFcntl())
import codemate_setup.download_file
"""


def test_download_modules_import_without_fcntl() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_FCNTL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.stderr == ""
