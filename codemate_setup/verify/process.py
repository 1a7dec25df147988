"""Child processes of the verification, with their output sent to the log."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from codemate_setup.errors import SetupCancelledError, VerificationError
from codemate_setup.verify.leftovers import current_records

logger = logging.getLogger(__name__)

# Lines of output kept for an error message; the log file gets all of them.
OUTPUT_TAIL_LINES = 40
# Seconds between checks for cancellation while a child runs.
POLL_INTERVAL = 0.05
# Seconds a child gets to exit after SIGTERM before it is killed.
TERMINATE_GRACE = 5.0

# Variables that would make a child interpreter load the wrong modules.
_PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE")


@dataclass(frozen=True)
class ProcessResult:
    """Exit status and the last lines of a finished child's output."""

    returncode: int
    output_tail: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when the child exited with status 0."""
        return self.returncode == 0

    def last_line(self) -> str:
        """Return the last non-empty output line, or a note that there was none."""
        for line in reversed(self.output_tail):
            if line.strip():
                return line.strip()
        return f"exit status {self.returncode}, no output"


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment without variables that redirect Python."""
    environ = {
        key: value for key, value in os.environ.items() if key not in _PYTHON_VARIABLES
    }
    environ.update(extra or {})
    return environ


def run_logged(
    command: Sequence[str],
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    label: str,
    extra_env: dict[str, str] | None = None,
) -> ProcessResult:
    """Run a child to its end, logging each output line at DEBUG.

    Args:
        command: The program and its arguments.
        timeout: Seconds the child may run.
        cancel: Set to stop the child early.
        label: Short name for log lines, such as ``pip``.
        extra_env: Variables added to the child's environment.

    Raises:
        SetupCancelledError: If ``cancel`` was set; the child is stopped first.
        VerificationError: If the child cannot be started or runs longer than
            ``timeout``.
    """
    logger.debug("running %s: %s", label, " ".join(map(str, command)))
    try:
        child = subprocess.Popen(
            [str(part) for part in command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=child_environment(extra_env),
            # Its own process group, so stopping it also stops what it started
            # (python -m venv runs ensurepip as a grandchild).
            start_new_session=os.name == "posix",
        )
    except OSError as e:
        raise VerificationError(f"failed to start {label} ({command[0]}): {e}") from e

    records = current_records()
    record = records.add(child.pid, label) if records is not None else None
    try:
        return _wait_logged(child, timeout=timeout, cancel=cancel, label=label)
    finally:
        if records is not None:
            records.remove(record)


def _wait_logged(
    child: subprocess.Popen[str],
    *,
    timeout: float,
    cancel: threading.Event | None,
    label: str,
) -> ProcessResult:

    tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
    reader = threading.Thread(
        target=_pump_output, args=(child, tail, label), daemon=True
    )
    reader.start()

    deadline = time.monotonic() + timeout
    try:
        while not _wait_briefly(child):
            if cancel is not None and cancel.is_set():
                raise SetupCancelledError(f"verification cancelled while {label} ran")
            if time.monotonic() > deadline:
                raise VerificationError(
                    f"{label} timed out after {timeout:.0f} s; the log file has its "
                    "output"
                )
            time.sleep(POLL_INTERVAL)
    except BaseException:
        _stop(child, label)
        raise
    finally:
        reader.join(timeout=TERMINATE_GRACE)

    logger.debug("%s exited with status %d", label, child.returncode)
    return ProcessResult(child.returncode, tuple(tail))


def _wait_briefly(child: subprocess.Popen[str]) -> bool:
    """Wait up to ``POLL_INTERVAL`` for the child; True once it has exited."""
    try:
        child.wait(timeout=POLL_INTERVAL)
    except subprocess.TimeoutExpired:
        return False
    return True


def _pump_output(
    child: subprocess.Popen[str], tail: collections.deque[str], label: str
) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        text = line.rstrip()
        tail.append(text)
        logger.debug("%s: %s", label, text)
    child.stdout.close()


def _stop(child: subprocess.Popen[str], label: str) -> None:
    if child.poll() is not None:
        return
    logger.debug("stopping %s (pid %d)", label, child.pid)
    _signal_tree(child, signal.SIGTERM)
    try:
        child.wait(timeout=TERMINATE_GRACE)
    except subprocess.TimeoutExpired:
        _signal_tree(child, signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
        child.wait()
    if os.name == "posix":
        # Grandchildren may outlive the child after SIGTERM.
        _signal_tree(child, signal.SIGKILL)


def _signal_tree(child: subprocess.Popen[str], signum: int) -> None:
    """Send ``signum`` to the child's process group, or to the child on Windows."""
    if os.name != "posix":
        child.terminate()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)
