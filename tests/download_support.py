"""Shared settings of the download tests: fast retries, the file hash, a clock,
and a file system that rejects splices."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from typing import Any

import pytest

from codemate_setup import download_body
from codemate_setup.config import Limits
from codemate_setup.download_hash import THREAD_NAME


def fast_limits(**overrides: Any) -> Limits:
    """Return limits with retries and timeouts short enough for tests.

    The retry logic is the default one; only its delays are shorter.
    """
    settings: dict[str, Any] = {
        "backoff_base": 0.01,
        "backoff_max": 0.02,
        "max_retry_after": 0.1,
        "max_retries": 3,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "chunk_bytes": 64 * 1024,
        "disk_reserve_bytes": 0,
    }
    settings.update(overrides)
    return Limits(**settings)


def sha256(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class FakeClock:
    """A monotonic clock that a test moves by setting ``now``."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reject_file_splice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every splice into a file fail, as on a file system without support."""
    real_splice = os.splice

    def splice(src, dst, count, offset_src=None, offset_dst=None, flags=0):
        # Only a splice into a file passes an offset for its output.
        if offset_dst is not None:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_splice(src, dst, count, offset_src, offset_dst, flags)

    monkeypatch.setattr(download_body.os, "splice", splice)


def hashing_threads() -> list[threading.Thread]:
    """Return the hashing threads still alive."""
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME]


class SlowHash:
    """A sha256 object that takes half a second per update, as on a busy machine."""

    def __init__(self) -> None:
        self.inner = hashlib.sha256()

    def update(self, data: bytes) -> None:
        time.sleep(0.5)
        self.inner.update(data)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()
