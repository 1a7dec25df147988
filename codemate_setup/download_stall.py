"""A floor on download speed, so that a trickling server cannot hold a file forever.

The read timeout bounds each wait for bytes, but a server that sends one byte
every few seconds never trips it. A transfer that receives fewer than
``min_bytes`` per ``window_seconds``, on average over a window of at least
that length, counts as stalled. curl's ``--speed-limit`` and ``--speed-time``
options set a similar floor.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class StallGuard:
    """The bytes per window of one transfer attempt, checked against a floor.

    Args:
        min_bytes: Bytes that each window must bring; 0 turns the check off.
        window_seconds: Length of a window.
        clock: Monotonic clock in seconds, replaceable in tests.
    """

    def __init__(
        self,
        min_bytes: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_bytes = min_bytes
        self.window_seconds = window_seconds
        self._clock = clock
        self._window_start = clock()
        self._window_bytes = 0

    def add(self, count: int) -> str | None:
        """Count ``count`` bytes just received.

        Returns:
            Why the transfer counts as stalled, or None while it goes fast enough.
        """
        if self.min_bytes <= 0:
            return None
        self._window_bytes += count
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed < self.window_seconds:
            return None
        # A check runs only when bytes arrive, so a window can end long after
        # window_seconds. The floor scales with it: a server cannot pass with
        # min_bytes sent once per read timeout.
        if self._window_bytes < self.min_bytes * elapsed / self.window_seconds:
            return (
                f"the transfer stalled: {self._window_bytes} bytes arrived in "
                f"{elapsed:.1f} s, fewer than the {self.min_bytes} bytes required "
                f"every {self.window_seconds:g} s"
            )
        self._window_start = now
        self._window_bytes = 0
        return None


class HeadStalled(TimeoutError):
    """A response head that was still incomplete one stall window after its request.

    A subclass of TimeoutError, so it is retried like a read timeout. Its
    message is the reason from :func:`head_stall_reason`.
    """


def head_stall_reason(min_bytes: int, window_seconds: float) -> str:
    """Describe a response head that did not arrive within one window."""
    return (
        f"the transfer stalled: the response head timed out, because it was not "
        f"complete {window_seconds:g} s after the request, while {min_bytes} bytes "
        f"are required every {window_seconds:g} s"
    )
