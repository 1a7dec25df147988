"""Locked, atomic, crash-safe storage of the state document.

Writers hold the ``flock`` lock on ``setup_state.lock`` across the whole
read-modify-write and replace the file atomically. Readers take no lock: every
version of the file on disk is a complete document.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codemate_setup.errors import StateFileError
from codemate_setup.fsutil import (
    fsync_dir,
    replace_with_retry,
    write_failure_advice,
)
from codemate_setup.state.lockfile import StateLock
from codemate_setup.state.schema import shape_problem

logger = logging.getLogger(__name__)

Mutator = Callable[[dict[str, Any] | None], dict[str, Any]]

_TEMP_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_TRUNC
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)


class StateStore:
    """The state file and its lock.

    Args:
        path: The state file, such as ``~/.codemate.test/setup_state.json``.
        durable: Fsync each write and its folder (the default). Tests of pure
            logic may turn it off; readers never see a torn file either way.
    """

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        self.lock_path = path.with_suffix(".lock")
        # Only the lock holder writes this name, so a file left by a killed
        # writer is simply overwritten by the next one.
        self.temp_path = path.with_name(f".{path.name}.writing.tmp")
        self.durable = durable
        self._lock = StateLock(self.lock_path)
        # The bytes and document of this store's last write. When the file
        # still contains exactly those bytes, the next write skips the parse.
        self._last_write: tuple[bytes, dict[str, Any]] | None = None

    def read(self) -> dict[str, Any] | None:
        """Read the document without a lock.

        Returns:
            The parsed document, or None when the file does not exist.

        Raises:
            StateFileError: If the file is unreadable, not JSON, or not shaped
                like a state document.
        """
        data = self._read_bytes()
        return None if data is None else _parse(data, self.path)

    def read_for_report(self) -> dict[str, Any] | None:
        """Read the document like :meth:`read`, for a command that only reports it.

        Raises:
            StateFileError: As :meth:`read`; for a corrupt file the message also
                states that the next setup moves it aside.
        """
        try:
            return self.read()
        except StateFileError as e:
            if not self.path.is_file():
                raise
            raise StateFileError(
                f"{e}; the next setup moves it aside and starts a fresh state, "
                "or delete it"
            ) from e

    def transact(self, mutate: Mutator, *, timeout: float) -> dict[str, Any] | None:
        """Apply ``mutate`` to the document under the lock and write the result.

        A corrupt document is moved aside and ``mutate`` receives None, as for
        a missing file.

        Args:
            mutate: Takes the current document (or None) and returns the new one.
            timeout: Seconds to wait for the lock.

        Returns:
            The written document, or None when the lock was not acquired in time.

        Raises:
            StateFileError: If the folder is not writable or the disk is full.
        """
        try:
            token = self._lock.acquire(timeout)
        except OSError as e:
            raise StateFileError(
                f"cannot create the state lock {self.lock_path}: {e}; "
                + write_failure_advice(
                    e, "check that the folder exists and is writable"
                )
            ) from e
        if token is None:
            return None

        try:
            document = mutate(self._read_or_quarantine())
            self._write(document)
            return document
        finally:
            self._lock.release(token)

    def _read_or_quarantine(self) -> dict[str, Any] | None:
        try:
            return self._read_locked()
        except StateFileError as e:
            if not self.path.exists():
                raise
            aside = self._move_aside()
            logger.warning("%s; moved it to %s and started a fresh state", e, aside)
            return None

    def _read_locked(self) -> dict[str, Any] | None:
        last_write, self._last_write = self._last_write, None
        data = self._read_bytes()
        if data is None:
            return None

        if last_write is not None and data == last_write[0]:
            # Mutators edit the document in place, which is safe because no other
            # code keeps a reference to this store's copy.
            return last_write[1]
        return _parse(data, self.path)

    def _open_temp(self) -> int:
        try:
            return os.open(self.temp_path, _TEMP_FLAGS, 0o644)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
        # A link at the temp name is removed, never followed out of the folder.
        logger.warning("removed the link %s in place of the temp file", self.temp_path)
        self.temp_path.unlink()
        return os.open(self.temp_path, _TEMP_FLAGS, 0o644)

    def _read_bytes(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateFileError(
                f"cannot read the state file {self.path}: {e.strerror or e}; "
                "check that the home is a readable folder, or choose another "
                "with --home"
            ) from e

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        counter = 1
        while aside.exists():
            aside = aside.with_name(f"{aside.name}.{counter}")
            counter += 1
        try:
            os.replace(self.path, aside)
        except OSError as e:
            raise StateFileError(
                f"the state file {self.path} is corrupt and cannot be moved aside: {e}"
            ) from e
        return aside

    def _write(self, document: dict[str, Any]) -> None:
        # Compact output uses the C encoder; indented output is several times slower.
        data = json.dumps(document, ensure_ascii=False).encode("utf-8") + b"\n"
        try:
            self._replace_file(data)
        except OSError as e:
            raise StateFileError(
                f"cannot write the state file {self.path}: {e}; "
                + write_failure_advice(
                    e, "check free disk space and the folder's permissions"
                )
            ) from e
        self._last_write = (data, document)

    def _replace_file(self, data: bytes) -> None:
        try:
            descriptor = self._open_temp()
            try:
                _write_all(descriptor, data)
                if self.durable:
                    os.fsync(descriptor)
            finally:
                os.close(descriptor)
            replace_with_retry(self.temp_path, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.temp_path.unlink()
            raise

        if self.durable:
            fsync_dir(self.path.parent)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _parse(data: bytes, path: Path) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        kind = "empty" if not data.strip() else "not valid JSON"
        raise StateFileError(f"the state file {path} is {kind}") from e

    problem = shape_problem(document)
    if problem:
        raise StateFileError(f"the state file {path} is invalid: {problem}")
    return document
