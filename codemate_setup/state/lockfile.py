"""The state file's lock: ``flock`` on ``setup_state.lock``.

On POSIX this takes the same ``flock`` lock that ``filelock.FileLock`` takes on
the same file, so writers that use ``filelock`` (the application's GUI, say)
and this toolkit exclude each other. It skips ``filelock``'s per-call
bookkeeping, which costs more than the rest of a lock cycle. Where ``fcntl``
is missing (Windows), or the file system refuses ``flock``, it is
``filelock.FileLock`` itself. The setup lock (:mod:`codemate_setup.setuplock`)
is a lock of this kind too, on its own file.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import filelock

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

# Polling interval while another process holds the lock, in seconds; it
# doubles after each attempt up to the maximum.
FIRST_POLL_INTERVAL = 0.001
MAX_POLL_INTERVAL = 0.05

# flock errors that mean the file system has no flock support.
_NO_FLOCK_ERRNOS = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK}


class StateLock:
    """An exclusive lock on one lock file, shared with ``filelock`` users.

    One instance is used by several threads; each acquisition opens its own
    descriptor, so two threads of one process also exclude each other.

    Args:
        path: The lock file; created if missing, never deleted.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fallback: filelock.FileLock | None = None
        if fcntl is None:
            self._fallback = _file_lock(path)

    def acquire(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the lock.

        Returns:
            A token for :meth:`release`, or None when the lock stayed busy.

        Raises:
            OSError: If the lock file cannot be created.
        """
        if self._fallback is not None:
            return self._acquire_fallback(timeout)

        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if _wait_for_flock(descriptor, timeout):
                return descriptor
        except OSError as e:
            os.close(descriptor)
            if e.errno not in _NO_FLOCK_ERRNOS:
                raise
            logger.debug("flock is not supported on %s, so filelock is used", self.path)
            self._fallback = _file_lock(self.path)
            return self._acquire_fallback(timeout)
        except BaseException:
            # Ctrl+C during the wait, for one. The descriptor has no lock yet.
            os.close(descriptor)
            raise

        os.close(descriptor)
        return None

    def release(self, token: int) -> None:
        """Release the lock taken by :meth:`acquire`."""
        if token < 0 and self._fallback is not None:
            self._fallback.release()
            return
        # Closing the descriptor releases its flock.
        os.close(token)

    def _acquire_fallback(self, timeout: float) -> int | None:
        import filelock

        assert self._fallback is not None
        try:
            self._fallback.acquire(timeout=timeout)
        except filelock.Timeout:
            return None
        return -1


def _file_lock(path: Path) -> filelock.FileLock:
    # Imported only where flock is missing: importing filelock takes about
    # 10 ms, a share of every script's start-up.
    import filelock

    return filelock.FileLock(str(path))


def _wait_for_flock(descriptor: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    interval = FIRST_POLL_INTERVAL
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, MAX_POLL_INTERVAL)
