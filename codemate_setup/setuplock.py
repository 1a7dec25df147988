"""One setup at a time per home: a lock held for the whole of a setup."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator

from codemate_setup.config import HomeLayout, home_flag
from codemate_setup.errors import SetupBusyError, StateFileError
from codemate_setup.state.liveness import Liveness, assess
from codemate_setup.state.lockfile import StateLock
from codemate_setup.state.store import StateStore

logger = logging.getLogger(__name__)

# Seconds a setup waits for a busy setup lock before it reports the home busy.
# The probe of `--wait` and `--status` takes the lock for an instant only, so a
# setup that starts during a probe gets the lock on a later attempt.
BUSY_GRACE_SECONDS = 0.2


@contextlib.contextmanager
def hold_setup_lock(layout: HomeLayout) -> Iterator[int | None]:
    """Hold the home's setup lock, or fail if another setup keeps it.

    A lock still busy after ``BUSY_GRACE_SECONDS`` means another setup has it.

    The operating system releases the lock when the last process that has it
    open exits. A setup killed with SIGKILL therefore blocks the next one only
    until the phase child that inherited the lock has stopped.

    Yields:
        On POSIX, the file descriptor of the held lock. A child process that
        inherits it keeps the lock held until the child exits too, even when
        this process is killed. None elsewhere.

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

    _check_lock_path(layout)
    lock = StateLock(layout.setup_lock)
    try:
        token = lock.acquire(timeout=BUSY_GRACE_SECONDS)
    except OSError as e:
        raise StateFileError(
            f"cannot create the setup lock {layout.setup_lock}: "
            f"{e.strerror or e}; choose a writable folder with --home or CODEMATE_HOME"
        ) from e
    if token is None:
        raise SetupBusyError(_busy_message(layout))

    logger.debug("holding the setup lock %s", layout.setup_lock)
    try:
        _check_no_live_setup(layout)
        # A negative token is filelock's lock (Windows), which has no descriptor.
        yield token if token >= 0 else None
    finally:
        lock.release(token)
        logger.debug("released the setup lock %s", layout.setup_lock)


def setup_lock_held(layout: HomeLayout) -> bool:
    """Return True if another process has the home's setup lock.

    The probe locks a free lock file for an instant, which a setup that starts
    in that instant waits out (``BUSY_GRACE_SECONDS``). It opens the file
    read-only and never creates it, so it works in a home that the caller
    cannot write to.
    """
    try:
        import fcntl
    except ImportError:
        return _held_without_flock(layout)

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(layout.setup_lock, flags)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)
    return False


def _held_without_flock(layout: HomeLayout) -> bool:
    """Probe with filelock's lock, where ``flock`` is missing (Windows)."""
    # NOTE: this path has not run on Windows in the project's tests. It needs
    # write access to the lock file, so in a read-only home it reports no lock.
    if not layout.setup_lock.exists():
        return False
    lock = StateLock(layout.setup_lock)
    try:
        token = lock.acquire(timeout=0)
    except OSError:
        return False
    if token is None:
        return True
    lock.release(token)
    return False


def _check_lock_path(layout: HomeLayout) -> None:
    try:
        mode = os.lstat(layout.setup_lock).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise StateFileError(
            f"cannot read the setup lock {layout.setup_lock}: {e.strerror or e}; "
            "check the permissions of the home folder"
        ) from e
    if not stat.S_ISREG(mode):
        raise StateFileError(
            f"cannot create the setup lock {layout.setup_lock}: it exists and is "
            "not a regular file; remove it, or choose a writable folder with "
            "--home or CODEMATE_HOME"
        )


def _check_no_live_setup(layout: HomeLayout) -> None:
    """Raise if the state file names a live setup of another process.

    The setup lock alone misses a setup whose lock file was deleted while it
    ran, because the next setup then locks a new file.
    """
    # NOTE: a phase child still stopping after its orchestrator was killed is
    # not in the state file, so a deleted lock file lets a setup start beside it.
    try:
        document = StateStore(layout.state_file).read()
    except StateFileError:
        return
    pid = document.get("pid") if document else None
    if pid == os.getpid() or assess(document) is not Liveness.RUNNING:
        return
    logger.warning(
        "the setup lock %s was free but the state file records a running "
        "setup (pid %s); the lock file was probably deleted",
        layout.setup_lock,
        pid,
    )
    raise SetupBusyError(_busy_message(layout))


def _busy_message(layout: HomeLayout) -> str:
    try:
        document = StateStore(layout.state_file).read()
    except StateFileError:
        document = None
    pid = document.get("pid") if document else None
    if not isinstance(pid, int):
        pid = None

    if pid is not None and assess(document) is Liveness.INTERRUPTED:
        # The orchestrator died, and a phase child that inherited the lock
        # is still rolling back.
        return (
            f"the setup of pid {pid} in {layout.home} was interrupted and its "
            "phase process still holds the setup lock while it stops; try again "
            "in a few seconds"
        )
    running = f" (pid {pid})" if pid is not None else ""
    return (
        f"another setup is running in {layout.home}{running}; wait for it "
        f"with `setup_orchestrator.py --wait{home_flag(layout.home)}` or stop "
        "that process"
    )
