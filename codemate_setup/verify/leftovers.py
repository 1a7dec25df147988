"""Leftovers of a killed verification: running tools and a half-built environment.

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

from codemate_setup.errors import VerificationError
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

    An aside is named ``.NAME.old-PID-NS`` by ``replacing_folder``, which
    renames it to ``.NAME.trash-PID-NS`` before it deletes it. So an aside
    whose process is gone marks a rebuild that never finished, and a trash
    folder whose process is gone marks a deletion that never finished. Other
    names are left alone.

    Returns:
        A sentence saying what was restored, or None when nothing was aside.

    Raises:
        VerificationError: If the half-built environment cannot be deleted
            or the aside cannot be moved back.
    """
    for trash in _orphans(env_dir, "trash"):
        _delete(trash)
    asides = _orphans(env_dir, "old")
    if not asides:
        return None

    *older, latest = asides
    for path in older:
        _delete(path)
    try:
        if os.path.lexists(env_dir):
            _delete(env_dir, ignore_errors=False)
        os.replace(latest, env_dir)
    except OSError as e:
        raise VerificationError(
            f"failed to restore {env_dir} from {latest}, which a rebuild that was "
            f"interrupted had moved aside: {e}; move {latest} to {env_dir} or "
            "delete it, then run the verification again"
        ) from e

    message = (
        f"restored {env_dir} as it was before a rebuild that was interrupted, and "
        "deleted the half-built one"
    )
    logger.warning(message)
    return message


def _orphans(env_dir: Path, kind: str) -> list[Path]:
    """List the ``kind`` folders of dead processes next to ``env_dir``, oldest first.

    A folder of a live process is skipped, because that process may still be
    rebuilding. Such a process can run beside this one without the setup
    lock, for example a verification whose orchestrator was killed.
    """
    pattern = re.compile(rf"\.{re.escape(env_dir.name)}\.{kind}-([0-9]+)-([0-9]+)")
    found = []
    try:
        names = os.listdir(env_dir.parent)
    except OSError:
        return []
    for name in names:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        pid, moved_at_ns = int(match[1]), int(match[2])
        if not _moved_by_live_process(pid, moved_at_ns):
            found.append((moved_at_ns, env_dir.parent / name))
    return [path for _, path in sorted(found)]


def _moved_by_live_process(pid: int, moved_at_ns: int) -> bool:
    """Tell whether ``pid`` runs and is old enough to have moved the folder.

    A process that started after the move has a recycled pid.
    """
    if pid == os.getpid():
        return True
    started = process_start_time(pid)
    if started is None or not _running(pid):
        return False
    return started <= moved_at_ns / 1e9 + START_TIME_TOLERANCE


def _delete(path: Path, *, ignore_errors: bool = True) -> None:
    """Delete a folder, or only the link or file when ``path`` is not a folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
        return
    try:
        path.unlink()
    except OSError:
        if not ignore_errors:
            raise


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
