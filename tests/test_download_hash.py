"""Tests of the sha256 computed in a second thread while a file downloads."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from download_support import SlowHash, fast_limits, hashing_threads, sha256
from packaging.version import Version

from codemate_setup import download_hash
from codemate_setup.client import MiddlewareClient
from codemate_setup.download import DownloadItem, DownloadProgress, download_all
from codemate_setup.download_hash import BackgroundHasher, HashingError
from codemate_setup.errors import InstallError, IntegrityError, SetupCancelledError
from codemate_setup.middleware import FaultConfig
from codemate_setup.partial import part_path, sidecar_path
from codemate_setup.publish import publish_release

CHUNK = 64 * 1024
BIG = random.Random(23).randbytes(30 * CHUNK + 77)
FAST = fast_limits(chunk_bytes=CHUNK)


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


class FailingHash:
    """A sha256 object whose update raises from its second call on."""

    def __init__(self) -> None:
        self.calls = 0
        self.inner = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.calls += 1
        if self.calls > 1:
            raise MemoryError("no memory for the hash")
        self.inner.update(data)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


# BackgroundHasher


def test_hasher_threaded_digest_matches_hashlib() -> None:
    hasher = BackgroundHasher(CHUNK)

    for piece in pieces(BIG, 10_000):
        hasher.update(piece)

    assert hasher.threaded
    assert hasher.hexdigest() == sha256(BIG)
    assert hashing_threads() == []


def test_hasher_short_stream_stays_inline() -> None:
    hasher = BackgroundHasher(CHUNK)

    hasher.update(b"a" * (CHUNK - 1))

    assert hasher.hexdigest() == sha256(b"a" * (CHUNK - 1))
    assert not hasher.threaded


def test_hasher_continues_initial_hash() -> None:
    initial = hashlib.sha256(BIG[:1000])
    hasher = BackgroundHasher(CHUNK, initial=initial)

    for piece in pieces(BIG[1000:], 30_000):
        hasher.update(piece)

    assert hasher.hexdigest() == sha256(BIG)


def test_hasher_copies_mutable_chunks() -> None:
    hasher = BackgroundHasher(4)
    buffer = bytearray(b"abcd")

    hasher.update(memoryview(buffer))
    buffer[:] = b"wxyz"

    assert hasher.hexdigest() == sha256(b"abcd")


def test_hasher_digest_repeats_after_close() -> None:
    hasher = BackgroundHasher(CHUNK)
    for piece in pieces(BIG, CHUNK):
        hasher.update(piece)
    digest = hasher.hexdigest()

    hasher.close()

    assert hasher.hexdigest() == digest


def test_hasher_update_after_digest_rejected() -> None:
    hasher = BackgroundHasher(CHUNK)
    hasher.hexdigest()

    with pytest.raises(ValueError, match="after hexdigest"):
        hasher.update(b"more")


def test_hasher_digest_after_close_rejected() -> None:
    hasher = BackgroundHasher(CHUNK)
    hasher.update(BIG)
    hasher.close()

    with pytest.raises(ValueError, match="after close"):
        hasher.hexdigest()


def test_hasher_close_ends_thread() -> None:
    hasher = BackgroundHasher(CHUNK)
    for piece in pieces(BIG, CHUNK):
        hasher.update(piece)

    hasher.close()
    hasher.close()

    assert hasher.threaded
    assert hashing_threads() == []


def test_hasher_thread_error_raised_by_digest() -> None:
    hasher = BackgroundHasher(CHUNK, initial=FailingHash())
    for piece in pieces(BIG[: 2 * CHUNK], CHUNK):
        hasher.update(piece)

    with pytest.raises(HashingError) as caught:
        hasher.hexdigest()

    assert "computing the sha256 failed: MemoryError" in str(caught.value)
    assert isinstance(caught.value.__cause__, MemoryError)
    assert hashing_threads() == []


def test_hasher_thread_error_raised_by_update() -> None:
    hasher = BackgroundHasher(CHUNK, initial=FailingHash())
    chunk = BIG[:CHUNK]

    # The bounded queue makes update() wait for the thread, which meets the
    # error on its second batch, so a few more batches must raise.
    with pytest.raises(HashingError, match="MemoryError"):
        for _ in range(download_hash.MAX_QUEUED_BATCHES + 4):
            hasher.update(chunk)

    hasher.close()
    assert hashing_threads() == []


# BackgroundHasher.update_file


@pytest.fixture
def big_file(tmp_path) -> Iterator[int]:
    """A read-only descriptor of a file holding BIG."""
    path = tmp_path / "big.bin"
    path.write_bytes(BIG)
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


def test_hasher_file_regions_match_hashlib(big_file) -> None:
    hasher = BackgroundHasher(CHUNK)
    bounds = [0, 100, 5000, 3 * CHUNK + 1, 3 * CHUNK + 1, 20 * CHUNK + 9, len(BIG)]

    for start, end in zip(bounds, bounds[1:], strict=False):
        hasher.update_file(big_file, start, end - start)

    assert hasher.hexdigest() == sha256(BIG)
    assert hasher.threaded


def test_hasher_mixes_bytes_and_file_regions(big_file) -> None:
    hasher = BackgroundHasher(CHUNK)
    hasher.update(BIG[:777])
    hasher.update_file(big_file, 777, 2 * CHUNK)
    hasher.update(BIG[777 + 2 * CHUNK :])

    assert hasher.hexdigest() == sha256(BIG)


def test_hasher_region_past_file_end_fails(big_file) -> None:
    hasher = BackgroundHasher(CHUNK)
    hasher.update_file(big_file, 0, len(BIG) + 1)

    with pytest.raises(HashingError) as caught:
        hasher.hexdigest()

    assert f"the file ends at byte {len(BIG)}" in str(caught.value)


def test_hasher_truncated_file_fails(tmp_path) -> None:
    path = tmp_path / "part.bin"
    path.write_bytes(BIG)
    fd = os.open(path, os.O_RDONLY)
    hasher = BackgroundHasher(CHUNK, initial=SlowHash())
    hasher.update(BIG[:CHUNK])
    hasher.update_file(fd, CHUNK, 2 * CHUNK)
    # Another process truncates the file while the thread hashes the first batch.
    os.truncate(path, 0)

    try:
        with pytest.raises(HashingError) as caught:
            hasher.hexdigest()
    finally:
        os.close(fd)

    assert "the file ends at byte 0," in str(caught.value)


def test_hasher_update_file_after_digest_rejected(big_file) -> None:
    hasher = BackgroundHasher(CHUNK)
    hasher.hexdigest()

    with pytest.raises(ValueError, match="update_file"):
        hasher.update_file(big_file, 0, 1)


# Downloads through the hashing thread


@pytest.fixture
def served(tmp_path, make_tree, start_middleware):
    folder = tmp_path / "releases"
    tree = make_tree(tmp_path / "src", {"big.bin": BIG})
    publish_release(tree, "1.0.0", folder, durable=False)
    return start_middleware(folder)


@pytest.fixture
def client(served):
    with MiddlewareClient(served.url, limits=FAST) as middleware_client:
        yield middleware_client


@pytest.fixture
def started_threads(monkeypatch) -> list[BackgroundHasher]:
    """Record each BackgroundHasher that starts a hashing thread."""
    started: list[BackgroundHasher] = []
    original = BackgroundHasher._start_thread

    def record(self: BackgroundHasher) -> None:
        started.append(self)
        original(self)

    monkeypatch.setattr(BackgroundHasher, "_start_thread", record)
    return started


def big_item(stage: Path, sha: str | None = None) -> DownloadItem:
    return DownloadItem(
        Version("1.0.0"), "big.bin", stage / "big.bin", sha or sha256(BIG), len(BIG)
    )


def test_threaded_download_records_digest(client, tmp_path, started_threads) -> None:
    item = big_item(tmp_path)

    stats = download_all(client, [item])

    assert item.dest.read_bytes() == BIG
    assert stats.verified[item.dest].sha256 == sha256(BIG)
    assert len(started_threads) == 1
    assert hashing_threads() == []


def test_threaded_download_detects_mismatch(
    client, served, tmp_path, started_threads
) -> None:
    served.set_faults(FaultConfig(corrupt_bytes=True))
    item = big_item(tmp_path)

    with pytest.raises(IntegrityError) as caught:
        download_all(client, [item])

    corrupted = bytes(byte ^ 0xFF for byte in BIG)
    assert f"got sha256 {sha256(corrupted)}" in str(caught.value)
    assert len(started_threads) == 2
    assert not item.dest.exists()
    assert not part_path(item.dest).exists()
    assert hashing_threads() == []


def test_threaded_download_resumes_hash(
    client, served, tmp_path, started_threads
) -> None:
    # Both the bytes before the cut and those after it span several batches.
    served.set_faults(FaultConfig(drop_after_bytes=10 * CHUNK + 5, fault_count=1))
    item = big_item(tmp_path)

    stats = download_all(client, [item])

    assert item.dest.read_bytes() == BIG
    assert stats.resumes == 1
    assert stats.verified[item.dest].sha256 == sha256(BIG)
    assert len(started_threads) == 1


def test_hashing_thread_error_fails_download(client, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(download_hash, "hashlib", SimpleNamespace(sha256=FailingHash))
    item = big_item(tmp_path)

    with pytest.raises(InstallError) as caught:
        download_all(client, [item])

    message = str(caught.value)
    assert "computing the sha256 of the download of big.bin" in message
    assert "MemoryError('no memory for the hash')" in message
    assert not item.dest.exists()
    assert part_path(item.dest).exists()
    assert sidecar_path(item.dest).exists()
    assert hashing_threads() == []


@pytest.mark.timeout(30)
def test_cancel_mid_file_ends_hashing_thread(
    client, served, tmp_path, started_threads
) -> None:
    served.set_faults(FaultConfig(bytes_per_second=200_000))
    cancel = threading.Event()

    def cancel_after_two_batches(progress: DownloadProgress) -> None:
        if progress.bytes_done > 2 * CHUNK:
            cancel.set()

    item = big_item(tmp_path)

    with pytest.raises(SetupCancelledError):
        download_all(
            client, [item], cancel=cancel, on_progress=cancel_after_two_batches
        )

    assert len(started_threads) == 1
    assert 2 * CHUNK < part_path(item.dest).stat().st_size < len(BIG)
    assert not item.dest.exists()
    assert hashing_threads() == []
    assert [t for t in threading.enumerate() if t.name.startswith("download")] == []
