"""Tell a live setup from one whose process died.

The writer records its ``pid``, the process start time and a ``heartbeat``
timestamp. A reader trusts a "running" status only while that pid still
belongs to the same process and the heartbeat is recent.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from enum import Enum
from typing import Any

import psutil

from codemate_setup.state.schema import OverallStatus, parse_iso

# The owner refreshes the heartbeat with every write, and with a write of its
# own after this many quiet seconds. A reader allows for a loaded machine
# before it calls a setup on the same host stale.
HEARTBEAT_INTERVAL = 2.0
STALE_AFTER_SECONDS = 15.0
# Start times read twice for one process can differ by rounding of clock ticks.
START_TIME_TOLERANCE = 1.0


class Liveness(str, Enum):
    """Verdict of a reader on a state document's status."""

    NONE = "none"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    FINISHED = "finished"


def process_start_time(pid: int) -> float | None:
    """Return the start time of process ``pid`` in seconds since the epoch.

    Returns:
        None when the process does not exist or the OS does not report it.
    """
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def owner_fields(pid: int | None = None) -> dict[str, Any]:
    """Return the keys that identify the writing process in the state file."""
    pid = os.getpid() if pid is None else pid
    return {
        "pid": pid,
        "process_start_time": process_start_time(pid),
        "hostname": socket.gethostname(),
    }


def owner_alive(document: dict[str, Any]) -> bool:
    """Return whether the process recorded in ``document`` still runs.

    A pid that now belongs to a process started at another time is a recycled
    pid, so the original writer is gone.
    """
    pid = document.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False

    host = document.get("hostname")
    if host and host != socket.gethostname():
        # A process on another machine cannot be checked; only the heartbeat can.
        return True

    current_start = process_start_time(pid)
    if current_start is None:
        return False

    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except (psutil.Error, OSError):
        return False

    recorded_start = document.get("process_start_time")
    if isinstance(recorded_start, (int, float)):
        return abs(current_start - recorded_start) <= START_TIME_TOLERANCE
    return True


def heartbeat_age(
    document: dict[str, Any], now: dt.datetime | None = None
) -> float | None:
    """Return the seconds since the last heartbeat, or None if there is none."""
    text = document.get("heartbeat")
    if not isinstance(text, str):
        return None
    try:
        beat = parse_iso(text)
    except ValueError:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    return max((now - beat).total_seconds(), 0.0)


def assess(document: dict[str, Any] | None) -> Liveness:
    """Classify a state document as running, interrupted, finished or absent."""
    if document is None:
        return Liveness.NONE

    status = document.get("overall_status")
    if status not in (OverallStatus.RUNNING.value, OverallStatus.PENDING.value):
        return Liveness.FINISHED

    if not owner_alive(document):
        return Liveness.INTERRUPTED

    age = heartbeat_age(document)
    if age is not None and age > STALE_AFTER_SECONDS:
        return Liveness.INTERRUPTED

    return Liveness.RUNNING
