"""Test hooks that make the installer crash or fail at a named point.

These exist only so tests can prove crash safety on real processes; nothing
sets them in normal use. Both variables are read here and nowhere else.

``CODEMATE_FAULT_KILL_AT=POINT``
    The process kills itself with SIGKILL (``os._exit`` where SIGKILL does not
    exist) when it reaches ``POINT``, as a power cut or ``kill -9`` would.
``CODEMATE_FAULT_FAIL_AT=POINT``
    ``POINT`` raises ``OSError(ENOSPC)``, the failure of a full disk, which
    cannot be produced on demand here.

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

logger = logging.getLogger(__name__)

KILL_VARIABLE = "CODEMATE_FAULT_KILL_AT"
FAIL_VARIABLE = "CODEMATE_FAULT_FAIL_AT"


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
