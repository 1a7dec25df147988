"""SIGINT, SIGTERM and the exit of the orchestrator turned into a cancel event."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

logger = logging.getLogger(__name__)

# Set by the orchestrator for a phase that it runs as a child process.
PARENT_PID_VARIABLE = "CODEMATE_PARENT_PID"
# Seconds between two checks that the orchestrator still runs.
PARENT_POLL_SECONDS = 0.25


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

    # A terminal sends Ctrl+C to an orchestrator and its phase children
    # alike, and the orchestrator then sends SIGTERM to the child. Only the
    # first signal of the process that talks to the user is a warning.
    quiet = watched_parent() is not None

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        level = logging.INFO if quiet or token.cancelled else logging.WARNING
        logger.log(level, "received %s: cancelling the setup", name)
        token.cancel(name)

    wanted = [signal.SIGINT, signal.SIGTERM]
    previous = {signum: signal.signal(signum, handle) for signum in wanted}
    try:
        yield token
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def watched_parent(environ: dict[str, str] | None = None) -> int | None:
    """Return the orchestrator's pid from ``CODEMATE_PARENT_PID``, or None."""
    raw = (os.environ if environ is None else environ).get(PARENT_PID_VARIABLE, "")
    if raw.isascii() and raw.isdigit() and int(raw) > 0:
        return int(raw)
    return None


@contextlib.contextmanager
def cancel_when_parent_exits(
    token: CancelToken, parent_pid: int | None
) -> Iterator[CancelToken]:
    """Set ``token`` once ``parent_pid`` is no longer this process's parent.

    The orchestrator holds the setup lock for a phase that it runs as a
    child. A child whose orchestrator was killed with SIGKILL would go on
    without the lock, beside the next setup, so it stops as on SIGTERM: it
    rolls back and records the phase as cancelled.

    Args:
        token: The token that signals also set.
        parent_pid: The orchestrator's pid; None watches nothing.
    """
    if parent_pid is None:
        yield token
        return

    # NOTE: on Windows a child keeps its parent's pid as ppid after the
    # parent exits, so this watch never fires there.
    stopped = threading.Event()

    def watch() -> None:
        while os.getppid() == parent_pid:
            if stopped.wait(PARENT_POLL_SECONDS):
                return
        logger.warning("the orchestrator (pid %d) exited: cancelling", parent_pid)
        token.cancel("the exit of the orchestrator")

    watcher = threading.Thread(target=watch, name="parent-watch", daemon=True)
    watcher.start()
    try:
        yield token
    finally:
        stopped.set()
        watcher.join()
