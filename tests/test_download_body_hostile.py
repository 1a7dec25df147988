"""Hostile cases of the spliced body: short writes and a reset during hashing."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from download_support import fast_limits, reject_file_splice, sha256
from packaging.version import Version

from codemate_setup import download_body
from codemate_setup.client import MiddlewareClient
from codemate_setup.download import DownloadItem, download_all
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


# Resets a part file while its hashing thread still reads a mapped region.
RESET_WHILE_HASHING = """
import hashlib, sys, time
from codemate_setup.download_part import PartFile

class SlowHash:
    # A hashing thread that falls behind, as on a busy machine.
    def __init__(self):
        self.inner = hashlib.sha256()

    def update(self, data):
        time.sleep(0.5)
        self.inner.update(data)

handle = open(sys.argv[1], "w+b")
handle.write(b"x" * (1 << 20))
handle.flush()
part = PartFile(handle, 1 << 16, initial=SlowHash())
part.hasher.update_file(part.region_fd(), 0, 1 << 20)
time.sleep(0.1)
part.reset()
part.close()
"""


def test_part_reset_waits_for_hashing_thread(tmp_path) -> None:
    # Runs in a child process, because a SIGBUS would end the test process.
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", RESET_WHILE_HASHING, str(tmp_path / "file.part")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr.decode(errors="replace")
