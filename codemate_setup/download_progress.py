"""Progress of a set of downloads: bytes, files, transfer rate and remaining time.

The arithmetic (rate over a sliding window, remaining time) is pure; the
:class:`ProgressMeter` collects counts from many download threads and calls
the caller's callback at a bounded rate.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Seconds of history behind the reported transfer rate.
RATE_WINDOW_SECONDS = 5.0

# Shortest interval between two progress callbacks, in seconds (10 per second).
PROGRESS_INTERVAL_SECONDS = 0.1


@dataclass(frozen=True)
class DownloadProgress:
    """A snapshot of the progress of :func:`~codemate_setup.download.download_all`.

    Attributes:
        bytes_done: Bytes in place so far, counting reused and resumed bytes.
            It never decreases, even when a file restarts from scratch.
        bytes_total: Bytes of all files, or None if a size is unknown.
        files_done: Files downloaded or reused so far.
        files_total: Files requested.
        bytes_per_second: Recent transfer rate over the network.
        eta_seconds: Estimated seconds left, or None if unknown.
    """

    bytes_done: int
    bytes_total: int | None
    files_done: int
    files_total: int
    bytes_per_second: float
    eta_seconds: float | None


def transfer_rate(samples: Sequence[tuple[float, int]]) -> float:
    """Compute bytes per second between the oldest and the newest sample.

    Args:
        samples: ``(monotonic seconds, bytes transferred so far)`` pairs in
            time order.

    Returns:
        The rate, or 0.0 with fewer than two samples or no elapsed time.
    """
    if len(samples) < 2:
        return 0.0

    (start_time, start_bytes), (end_time, end_bytes) = samples[0], samples[-1]
    elapsed = end_time - start_time
    if elapsed <= 0:
        return 0.0
    return max(0.0, (end_bytes - start_bytes) / elapsed)


def remaining_seconds(
    bytes_done: int, bytes_total: int | None, rate: float
) -> float | None:
    """Estimate the seconds left at the current rate.

    Returns:
        0.0 when everything is done, None when the total or the rate is
        unknown.
    """
    if bytes_total is None:
        return None
    remaining = max(0, bytes_total - bytes_done)
    if remaining == 0:
        return 0.0
    if rate <= 0:
        return None
    return remaining / rate


class ProgressMeter:
    """Thread-safe progress counters that report at most every 0.1 s.

    Download threads call :meth:`add_bytes` and :meth:`add_file`; whichever
    thread finds the interval elapsed calls the callback. Two threads never
    call it at once, so the reported ``bytes_done`` never goes backwards.
    """

    def __init__(
        self,
        *,
        bytes_total: int | None,
        files_total: int,
        callback: Callable[[DownloadProgress], None] | None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = PROGRESS_INTERVAL_SECONDS,
    ) -> None:
        self._bytes_total = bytes_total
        self._files_total = files_total
        self._callback = callback
        self._clock = clock
        self._interval = interval
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._bytes_done = 0
        self._bytes_transferred = 0
        self._files_done = 0
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])
        self._last_emit = float("-inf")

    def add_bytes(self, count: int, *, transferred: bool = True) -> None:
        """Count bytes now in place, with ``transferred`` False for reused bytes."""
        with self._lock:
            self._bytes_done += count
            if transferred:
                self._bytes_transferred += count
        self._maybe_emit()

    def add_file_bytes(self, count: int) -> None:
        """Count one more file downloaded whole, with its ``count`` bytes."""
        with self._lock:
            self._bytes_done += count
            self._bytes_transferred += count
            self._files_done += 1
        self._maybe_emit()

    def add_file(self) -> None:
        """Count one more file downloaded or reused."""
        with self._lock:
            self._files_done += 1
        self._maybe_emit()

    def snapshot(self) -> DownloadProgress:
        """Return the progress now, recording a sample for the rate."""
        now = self._clock()
        with self._lock:
            samples = self._samples
            samples.append((now, self._bytes_transferred))
            while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_SECONDS:
                samples.popleft()
            rate = transfer_rate(samples)
            done = self._bytes_done
            files = self._files_done

        return DownloadProgress(
            bytes_done=done,
            bytes_total=self._bytes_total,
            files_done=files,
            files_total=self._files_total,
            bytes_per_second=rate,
            eta_seconds=remaining_seconds(done, self._bytes_total, rate),
        )

    def finish(self) -> None:
        """Call the callback once more with the final counts."""
        if self._callback is None:
            return
        with self._emit_lock:
            self._callback(self.snapshot())

    def _maybe_emit(self) -> None:
        if self._callback is None:
            return
        if self._clock() - self._last_emit < self._interval:
            return

        # Another thread is already reporting, and this update is in its
        # snapshot or in the next one.
        if not self._emit_lock.acquire(blocking=False):
            return
        try:
            if self._clock() - self._last_emit < self._interval:
                return
            self._last_emit = self._clock()
            self._callback(self.snapshot())
        finally:
            self._emit_lock.release()
