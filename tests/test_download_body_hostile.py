"""Hostile cases of the spliced body: short writes and a reset during hashing."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from download_support import (
    SlowHash,
    fast_limits,
    hashing_threads,
    reject_file_splice,
    sha256,
)
from packaging.version import Version

from codemate_setup import download_body
from codemate_setup.client import MiddlewareClient
from codemate_setup.download import DownloadItem, download_all
from codemate_setup.download_part import PartFile
from codemate_setup.publish import publish_release

pytestmark = pytest.mark.skipif(
    not download_body.SPLICE_SUPPORTED, reason="os.splice needs Linux"
)

CHUNK = 64 * 1024
BIG = random.Random(41).randbytes(48 * CHUNK + 5)
FAST = fast_limits(chunk_bytes=CHUNK)
V1 = Version("1.0.0")


@pytest.fixture
def served(tmp_path, make_tree, start_middleware):
    tree = make_tree(tmp_path / "src", {"big.bin": BIG})
    publish_release(tree, "1.0.0", tmp_path / "releases", durable=False)
    return start_middleware(tmp_path / "releases")


@pytest.fixture
def stage(tmp_path) -> Path:
    return tmp_path / "staging" / "files"


def big_item(stage: Path) -> DownloadItem:
    return DownloadItem(
        version=V1,
        path="big.bin",
        dest=stage / "big.bin",
        sha256=sha256(BIG),
        size=len(BIG),
    )


def test_short_pwrite_keeps_every_byte(served, stage, monkeypatch) -> None:
    reject_file_splice(monkeypatch)
    real_pwrite = os.pwrite

    def short_pwrite(fd, data, offset):
        # A regular file may take fewer bytes than given, as near a full disk.
        return real_pwrite(fd, data[: max(1, len(data) // 2)], offset)

    monkeypatch.setattr(download_body.os, "pwrite", short_pwrite)
    with MiddlewareClient(served.url, limits=FAST) as client:
        download_all(client, [big_item(stage)])

    assert (stage / "big.bin").read_bytes() == BIG


def test_part_reset_ends_hashing_thread(tmp_path) -> None:
    handle = open(tmp_path / "file.part", "w+b")  # noqa: SIM115 - PartFile closes it
    handle.write(b"x" * 2 * CHUNK)
    handle.flush()
    part = PartFile(handle, CHUNK, initial=SlowHash())
    part.hasher.update_file(part.region_fd(), 0, 2 * CHUNK)

    part.reset()
    try:
        assert hashing_threads() == []
    finally:
        part.close()
