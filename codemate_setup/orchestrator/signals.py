"""SIGINT and SIGTERM turned into a cancel event that phases check."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

logger = logging.getLogger(__name__)


class CancelToken:
    """A cancel event that also remembers which signal set it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def cancel(self, signal_name: str) -> None:
        """Request cancellation; the first signal's name is kept."""
        if self.signal_name is None:
            self.signal_name = signal_name
        self.event.set()


@contextlib.contextmanager
def cancel_on_signals(token: CancelToken) -> Iterator[CancelToken]:
    """Set ``token`` on SIGINT or SIGTERM while the block runs.

    The previous handlers come back afterwards. Outside the main thread,
    where Python cannot install handlers, the block runs without them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        logger.warning("received %s: cancelling the setup", name)
        token.cancel(name)

    wanted = [signal.SIGINT, signal.SIGTERM]
    previous = {signum: signal.signal(signum, handle) for signum in wanted}
    try:
        yield token
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
