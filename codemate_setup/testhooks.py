"""Test hooks that make the installer crash or fail at a named point.

These exist only so tests can prove crash safety on real processes; nothing
sets them in normal use. Their variables are read here and nowhere else.

``CODEMATE_FAULT_KILL_AT=POINT``
    The process kills itself with SIGKILL (``os._exit`` where SIGKILL does not
    exist) when it reaches ``POINT``, as a power cut or ``kill -9`` would.
``CODEMATE_FAULT_FAIL_AT=POINT``
    ``POINT`` raises ``OSError(ENOSPC)``, the failure of a full disk, which
    cannot be produced on demand here.
``CODEMATE_FAULT_PAUSE_AT=POINT`` with ``CODEMATE_FAULT_PAUSE_FILE=PATH``
    The process writes its pid to ``PATH`` when it reaches ``POINT``, then
    waits while ``PATH`` exists, for at most ``PAUSE_LIMIT_SECONDS``. A test
    can then kill this process, or its parent, at a known instant.

Points: ``apply:after-journal``, ``apply:after-move:N`` (after the N-th move,
counting from 1), ``commit:after-listing``, ``commit:after-version``,
``commit:after-record``, ``commit:after-mark``, ``finish:before-journal-removal``
and ``recover:after-undo:N`` (after undoing the N-th move during recovery).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger(__name__)

KILL_VARIABLE = "CODEMATE_FAULT_KILL_AT"
FAIL_VARIABLE = "CODEMATE_FAULT_FAIL_AT"
PAUSE_VARIABLE = "CODEMATE_FAULT_PAUSE_AT"
PAUSE_FILE_VARIABLE = "CODEMATE_FAULT_PAUSE_FILE"
# Seconds a paused process waits at most for its pause file to be deleted.
PAUSE_LIMIT_SECONDS = 60.0
_PAUSE_POLL_SECONDS = 0.01


def fault_point(name: str) -> None:
    """Crash or fail here when a test hook names this point.

    Raises:
        OSError: With ``errno.ENOSPC`` when ``CODEMATE_FAULT_FAIL_AT`` is ``name``.
    """
    if os.environ.get(KILL_VARIABLE) == name:
        logger.debug("test hook: killing the process at %s", name)
        sigkill = getattr(signal, "SIGKILL", None)
        if sigkill is not None:
            os.kill(os.getpid(), sigkill)
        os._exit(137)

    if os.environ.get(FAIL_VARIABLE) == name:
        logger.debug("test hook: failing at %s", name)
        raise OSError(errno.ENOSPC, f"No space left on device (test fault at {name})")

    pause_file = os.environ.get(PAUSE_FILE_VARIABLE)
    if os.environ.get(PAUSE_VARIABLE) == name and pause_file:
        _pause(name, Path(pause_file))


def _pause(name: str, pause_file: Path) -> None:
    logger.debug("test hook: pausing at %s while %s exists", name, pause_file)
    pause_file.write_text(str(os.getpid()), encoding="ascii")
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    while pause_file.exists() and time.monotonic() < deadline:
        time.sleep(_PAUSE_POLL_SECONDS)
