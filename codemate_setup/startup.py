"""Ctrl+C while a command loads its modules.

Python raises KeyboardInterrupt wherever SIGINT lands, so Ctrl+C while the
modules load prints a traceback of the import machinery. The scripts load
their modules inside :func:`interrupt_exits_quietly` instead.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from codemate_setup.errors import ExitCode

INTERRUPTED_MESSAGE = "interrupted by the user while starting; nothing was changed"


@contextlib.contextmanager
def interrupt_exits_quietly(enabled: bool) -> Iterator[None]:
    """Turn Ctrl+C inside the block into exit status 130 and one line.

    Args:
        enabled: False leaves SIGINT alone, for a script imported as a module.
    """
    # Python sets signal handlers in the main thread only, and a SIGINT that
    # the parent ignores (a background job) stays ignored.
    if (
        not enabled
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        yield
        return

    previous = signal.signal(signal.SIGINT, _exit_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_interrupted(signum: int, frame: FrameType | None) -> None:
    print(f"error: {INTERRUPTED_MESSAGE}", file=sys.stderr)
    raise SystemExit(ExitCode.INTERRUPTED)
