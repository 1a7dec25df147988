"""What a killed verification leaves behind: running tools and a half-built environment.

The verification runs ``python -m venv``, uv and pip in process groups of
their own, so that stopping one stops what it started too. A verification
killed with SIGKILL stops nothing: its tools go on writing into the
environment. While a tool runs, a record of it lies in the home's
``children/`` folder, and the next verification stops every recorded tool
whose verification is gone before it looks at the environment.

A rebuild moves the old environment aside first. When the verification dies
during the rebuild, the next one finds the aside folder, deletes the
half-built environment and moves the old one back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from codemate_setup.state.liveness import START_TIME_TOLERANCE, process_start_time

logger = logging.getLogger(__name__)

# Seconds to wait for a stopped tool to exit.
STOP_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.05


class ChildRecords:
    """Records of the tools that this process runs, one file per tool.

    Args:
        folder: The home's ``children/`` folder; created on first use.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def add(self, pid: int, label: str) -> Path | None:
        """Record a tool that has just started; None if it cannot be recorded.

        A failed record is logged and the tool runs unrecorded: the record
        only helps a later run after a crash.
        """
        record = {
            "pid": pid,
            "start_time": process_start_time(pid),
            "label": label,
            "owner_pid": os.getpid(),
            "owner_start_time": process_start_time(os.getpid()),
        }
        path = self.folder / f"{pid}.json"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record), encoding="utf-8")
        except OSError as e:
            logger.warning("cannot record %s (pid %d) in %s: %s", label, pid, path, e)
            return None
        return path

    def remove(self, path: Path | None) -> None:
        """Delete the record of a tool that has exited."""
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def stop_leftovers(self) -> list[str]:
        """Stop the recorded tools whose verification is gone.

        Returns:
            One sentence per tool that was still running and is now stopped.
        """
        stopped = []
        for path in sorted(self.folder.glob("*.json")):
            record = _read_record(path)
            if record is not None and _alive(
                record.get("owner_pid"), record.get("owner_start_time")
            ):
                continue  # A live verification runs this tool.
            if record is not None and _alive(
                record.get("pid"), record.get("start_time")
            ):
                stopped.append(_stop_group(record["pid"], str(record.get("label"))))
            self.remove(path)
        return stopped


_current: ChildRecords | None = None


@contextlib.contextmanager
def recording_children(records: ChildRecords | None) -> Iterator[None]:
    """Record every tool that ``run_logged`` starts while the block runs.

    With None, tools started in the block are not recorded.
    """
    global _current
    previous, _current = _current, records
    try:
        yield
    finally:
        _current = previous


def current_records() -> ChildRecords | None:
    """Return the records in use, or None outside :func:`recording_children`."""
    return _current


def restore_interrupted_rebuild(env_dir: Path) -> str | None:
    """Put back the environment that a killed rebuild had moved aside.

    Only one verification runs in a home at a time, so an aside folder of
    another process belongs to a rebuild that never finished.

    Returns:
        A sentence saying what was restored, or None when nothing was aside.
    """
    own_prefix = f".{env_dir.name}.old-{os.getpid()}-"
    asides = sorted(
        (
            path
            for path in env_dir.parent.glob(f".{env_dir.name}.old-*")
            if not path.name.startswith(own_prefix)
        ),
        key=_moved_at,
    )
    if not asides:
        return None

    *older, latest = asides
    for path in older:
        shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(env_dir):
        if env_dir.is_dir() and not env_dir.is_symlink():
            shutil.rmtree(env_dir)
        else:
            env_dir.unlink()
    os.replace(latest, env_dir)
    message = (
        f"restored {env_dir} as it was before a rebuild that was interrupted, and "
        "deleted the half-built one"
    )
    logger.warning(message)
    return message


def _moved_at(aside: Path) -> int:
    """Return when a folder was moved aside: its name ends with the time in ns."""
    suffix = aside.name.rpartition("-")[2]
    return int(suffix) if suffix.isdigit() else 0


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        logger.warning("ignoring the unreadable tool record %s: %s", path, e)
        return None
    return record if isinstance(record, dict) else None


def _alive(pid: object, start_time: object) -> bool:
    """Tell whether ``pid`` is still the process that started at ``start_time``."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    current = process_start_time(pid)
    if current is None or not isinstance(start_time, int | float):
        return False
    return abs(current - start_time) <= START_TIME_TOLERANCE


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_group(pid: int, label: str) -> str:
    """Kill the tool's process group (the tool alone on Windows) and wait for it."""
    killpg = getattr(os, "killpg", None)
    # NOTE: on Windows only the tool itself is stopped, not what it started,
    # and this branch has not run there.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if killpg is not None:
            killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
    message = (
        f"stopped {label} (pid {pid}), left running by a verification that was killed"
    )
    logger.warning(message)
    return message
