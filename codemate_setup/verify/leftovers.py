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
import re
import shutil
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import psutil

from codemate_setup.state.liveness import START_TIME_TOLERANCE, process_start_time

logger = logging.getLogger(__name__)

# Seconds to wait for a stopped tool to exit.
STOP_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.05
# A record has about 150 bytes, so a larger file is not one that add() wrote.
_MAX_RECORD_BYTES = 64 * 1024
_RECORD_NAME = re.compile(r"[1-9][0-9]*\.json")


class StopResult(NamedTuple):
    """Outcome of stopping one leftover tool."""

    stopped: bool
    message: str


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

    def stop_leftovers(self) -> list[StopResult]:
        """Stop the recorded tools whose verification is gone.

        Only regular files named ``PID.json`` count as records. Anything else
        in the folder is left alone, so that a folder which links to another
        place loses none of its own files.

        Returns:
            One result per tool that was still running. A tool that still
            runs after SIGKILL keeps its record, so the next run tries again.
        """
        results = []
        for path in self._record_paths():
            record = _read_record(path)
            if record is not None and _alive(
                record.get("owner_pid"), record.get("owner_start_time")
            ):
                continue  # A live verification runs this tool.
            if record is not None and _alive(
                record.get("pid"), record.get("start_time")
            ):
                result = _stop_tool(record["pid"], str(record.get("label")))
                if result is not None:
                    results.append(result)
                if result is not None and not result.stopped:
                    continue
            self.remove(path)
        return results

    def _record_paths(self) -> list[Path]:
        """List the record files, skipping links, folders and other names."""
        try:
            names = sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return []
        except OSError as e:
            logger.warning("cannot list the tool records in %s: %s", self.folder, e)
            return []

        paths = []
        for name in names:
            if _RECORD_NAME.fullmatch(name) is None:
                continue
            path = self.folder / name
            try:
                regular = stat.S_ISREG(path.lstat().st_mode)
            except OSError:
                continue
            if regular:
                paths.append(path)
            else:
                logger.warning("ignoring %s: a tool record is a regular file", path)
        return paths


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
    """Return the record in ``path``, or None if it is not one that add() wrote."""
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_RECORD_BYTES + 1)
        if len(data) > _MAX_RECORD_BYTES:
            raise ValueError(f"larger than {_MAX_RECORD_BYTES} bytes")
        record = json.loads(data.decode("utf-8"))
    except (OSError, ValueError) as e:
        logger.warning("ignoring the unreadable tool record %s: %s", path, e)
        return None
    # The file name is the tool's pid, as add() writes it.
    if not isinstance(record, dict) or str(record.get("pid")) != path.stem:
        logger.warning(
            "ignoring the tool record %s: its pid differs from its name", path
        )
        return None
    return record


def _alive(pid: object, start_time: object) -> bool:
    """Tell whether ``pid`` is still the process that started at ``start_time``.

    A zombie counts as dead: a verification killed with SIGKILL stays a zombie
    until its parent reaps it, and its tools must be stopped meanwhile.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if not isinstance(start_time, int | float) or isinstance(start_time, bool):
        return False
    current = process_start_time(pid)
    if current is None or abs(current - start_time) > START_TIME_TOLERANCE:
        return False
    return _running(pid)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_tool(pid: int, label: str) -> StopResult | None:
    """Kill the tool's process group (the tool alone on Windows) and wait for it.

    Returns:
        None, without sending a signal, when ``pid`` cannot be a tool that
        run_logged started.
    """
    reason = _not_a_tool(pid)
    if reason is not None:
        logger.warning(
            "not stopping %s (pid %d) of a tool record: %s", label, pid, reason
        )
        return None

    denied = None
    try:
        if os.name == "posix":
            os.killpg(pid, signal.SIGKILL)
        else:
            # NOTE: on Windows only the tool itself is stopped, not what it
            # started, and this branch has not run there.
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError as e:
        denied = e

    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while denied is None and _running(pid) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
    if _running(pid):
        cause = str(denied) if denied is not None else "SIGKILL did not end it"
        message = (
            f"failed to stop {label} (pid {pid}), left running by a verification "
            f"that was killed: {cause}; stop its process group yourself"
        )
        logger.warning(message)
        return StopResult(False, message)

    message = (
        f"stopped {label} (pid {pid}), left running by a verification that was killed"
    )
    logger.warning(message)
    return StopResult(True, message)


def _not_a_tool(pid: int) -> str | None:
    """Return why ``pid`` is not a tool of a verification, or None if it may be.

    run_logged starts each tool in a session of its own, so on POSIX a tool
    leads its session and process group. Killing the group of any other
    process, such as this one or the shell that started it, would stop
    programs that the verification never ran.
    """
    if pid == os.getpid():
        return "it is this process"
    try:
        ancestors = {parent.pid for parent in psutil.Process().parents()}
    except psutil.Error:
        ancestors = set()
    if pid in ancestors:
        return "it started this process"
    if os.name != "posix":
        return None
    try:
        leads_session = os.getsid(pid) == pid and os.getpgid(pid) == pid
    except OSError:
        return "it has exited"
    if not leads_session:
        return "it does not lead a session of its own, as every tool does"
    if pid == os.getpgrp():
        return "it leads the process group of this process"
    return None
