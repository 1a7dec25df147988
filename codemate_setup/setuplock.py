"""One setup at a time per home: a lock held for the whole of a setup."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import filelock

from codemate_setup.config import HomeLayout
from codemate_setup.errors import SetupBusyError, StateFileError
from codemate_setup.state.store import StateStore

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def hold_setup_lock(layout: HomeLayout) -> Iterator[None]:
    """Hold the home's setup lock, or fail at once if another setup has it.

    The operating system releases the lock when its process dies, so a setup
    killed with SIGKILL never blocks the next one.

    Raises:
        SetupBusyError: If another process has the lock; the message names
            its pid when the state file records one.
        StateFileError: If the home folder or the lock file cannot be created,
            such as in a read-only home.
    """
    try:
        layout.home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StateFileError(
            f"cannot create the home folder {layout.home}: {e}; "
            "choose a writable folder with --home or CODEMATE_HOME"
        ) from e

    lock = filelock.FileLock(str(layout.setup_lock), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise SetupBusyError(
            f"another setup is running in {layout.home}{_running_pid(layout)}; "
            "wait for it with `setup_orchestrator.py --wait` or stop that process"
        ) from None
    except OSError as e:
        raise StateFileError(
            f"cannot create the setup lock {layout.setup_lock}: "
            f"{e.strerror or e}; choose a writable folder with --home or CODEMATE_HOME"
        ) from e

    logger.debug("holding the setup lock %s", layout.setup_lock)
    try:
        yield
    finally:
        lock.release()
        logger.debug("released the setup lock %s", layout.setup_lock)


def _running_pid(layout: HomeLayout) -> str:
    try:
        document = StateStore(layout.state_file).read()
    except StateFileError:
        return ""
    if document and isinstance(document.get("pid"), int):
        return f" (pid {document['pid']})"
    return ""
