"""Crash-safe file writes: temp file, fsync, atomic replace, folder fsync."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# os.replace fails on Windows while another process has the target open; such
# readers hold it for milliseconds, so a short series of retries is enough.
REPLACE_ATTEMPTS = 50
REPLACE_RETRY_DELAY = 0.01
# Windows files have no POSIX permission bits, so modes are neither set nor compared.
HAS_POSIX_MODES = os.name != "nt"


def write_failure_advice(
    error: OSError, otherwise: str = "check free disk space and permissions"
) -> str:
    """Return what to do next after writing a file failed with ``error``.

    Args:
        error: The failure.
        otherwise: The advice for failures other than too many open files.
    """
    if error.errno in (errno.EMFILE, errno.ENFILE):
        return "raise the limit of open files (ulimit -n) and try again"
    return otherwise


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries to disk so a rename in it survives a crash.

    Does nothing on Windows, where folders cannot be opened for fsync.
    """
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_with_retry(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target``, retrying on ``PermissionError``.

    Raises:
        PermissionError: If the target stays locked for every attempt.
    """
    for attempt in range(REPLACE_ATTEMPTS):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == REPLACE_ATTEMPTS - 1:
                raise
            logger.debug("replace of %s blocked, retrying", target)
            time.sleep(REPLACE_RETRY_DELAY)


def atomic_write_bytes(target: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``target`` so readers see the old or the new content.

    The bytes go to a temp file in the same folder, which is flushed, fsynced
    and renamed over the target; then the folder is fsynced.

    Args:
        target: File to create or replace; its folder must exist.
        data: The complete new content.
        durable: Set to False to skip both fsyncs (readers still never see a
            torn file, but a power loss may lose the write).

    Raises:
        OSError: If the folder is not writable or the disk is full; the
            target is left unchanged and the temp file is removed.
    """
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    temp_path = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        replace_with_retry(temp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp_path.unlink()
        raise

    if durable:
        fsync_dir(target.parent)


def atomic_write_json(
    target: Path, document: Any, *, durable: bool = True, compact: bool = False
) -> None:
    """Serialize ``document`` as UTF-8 JSON and write it atomically.

    The JSON is indented for people to read, unless ``compact`` is set.
    Compact JSON escapes every non-ASCII character: the standard library's
    encoder takes about half the time that way.
    """
    if compact:
        text = json.dumps(document, separators=(",", ":"))
    else:
        text = json.dumps(document, indent=2, ensure_ascii=False)
    data = text.encode("utf-8")
    atomic_write_bytes(target, data + b"\n", durable=durable)
