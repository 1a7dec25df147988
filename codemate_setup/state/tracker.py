"""SetupTracker: the API every phase uses to report into the state file."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codemate_setup.config import resolve_home
from codemate_setup.errors import StateFileError
from codemate_setup.state import mutations
from codemate_setup.state.liveness import HEARTBEAT_INTERVAL, owner_fields
from codemate_setup.state.schema import OverallStatus, Phase, now_iso
from codemate_setup.state.store import StateStore

logger = logging.getLogger(__name__)

# Pure progress writes are coalesced to this many per second at most.
MAX_PROGRESS_WRITES_PER_SECOND = 10
# A status change waits this many times longer than a progress write for the lock.
STATUS_TIMEOUT_FACTOR = 6

PhaseLike = Phase | str
# A change edits the document in place, or returns a replacement document.
Change = Callable[[dict[str, Any]], "dict[str, Any] | None"]


class SetupTracker:
    """Records a setup's progress in the state file, safely across processes.

    Args:
        state_file_path: The state file; by default ``setup_state.json`` in
            ``CODEMATE_HOME``, else in ``~/.codemate.test``. Its folder is
            created if missing.
        lock_timeout: Seconds a progress write waits for the lock before it is
            skipped. Status and step changes wait ``STATUS_TIMEOUT_FACTOR``
            times longer and are never skipped.
        durable: Fsync every write (the default).

    Raises:
        StateFileError: If the folder cannot be created.
    """

    def __init__(
        self,
        state_file_path: str | os.PathLike[str] | None = None,
        *,
        lock_timeout: float = 5.0,
        durable: bool = True,
    ) -> None:
        if state_file_path is None:
            path = resolve_home() / "setup_state.json"
        else:
            path = Path(state_file_path).expanduser().absolute()

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StateFileError(
                f"cannot create the state folder {path.parent}: {e}; "
                "choose a writable home with --home or CODEMATE_HOME"
            ) from e

        self.state_file_path = path
        self.lock_timeout = lock_timeout
        self._store = StateStore(path, durable=durable)
        self._mutex = threading.RLock()
        self._pending: dict[str, dict[str, Any]] = {}
        # Changes held back for the next write, in the order they were made.
        self._pending_changes: list[Change] = []
        self._last_progress_write = 0.0
        self._last_write_at = time.monotonic()
        self._last_document: dict[str, Any] | None = None
        self._setup_id: str | None = None
        self._owner = False
        self._heartbeat_stop = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None

    # Reading

    def load_setup_state(self) -> dict[str, Any] | None:
        """Read the current document without a lock.

        Returns:
            The document with this tracker's held-back changes applied, as its
            next write will store it, or None when no setup has run in this
            home.

        Raises:
            StateFileError: If the file is corrupt; writers move such a file
                aside on their next write.
        """
        document = self._store.read()
        with self._mutex:
            pending = dict(self._pending)
            held_back = list(self._pending_changes)
        if document is not None:
            mutations.apply_pending(document, pending)
            for change in held_back:
                change(document)
        return document

    @property
    def setup_id(self) -> str | None:
        """The setup this tracker writes into, once started or joined."""
        return self._setup_id

    # The setup as a whole

    def start_setup(self, target_version: str | None = None) -> str:
        """Start a new setup: a new ``setup_id``, both phases pending.

        This process becomes the setup's owner: its pid is recorded and a
        heartbeat is refreshed at least every ``HEARTBEAT_INTERVAL`` seconds until
        :meth:`finish_setup`.

        Returns:
            The new setup id.
        """
        setup_id = f"setup_{int(time.time())}_{secrets.token_hex(3)}"
        owner = owner_fields()
        self._owner = True
        self._write_now(
            lambda doc: mutations.start_setup(doc, setup_id, target_version, owner)
        )
        self._setup_id = setup_id
        self._start_heartbeat()
        logger.info("started setup %s (target version %s)", setup_id, target_version)
        return setup_id

    def resume_setup(self) -> dict[str, Any]:
        """Take over the setup in the state file after its process died.

        This process becomes the owner, the setup runs again, and phases that
        had completed or were skipped keep their status so the caller can skip
        them.

        Returns:
            The document as it was before the takeover.

        Raises:
            StateFileError: If there is no setup to resume.
        """
        previous = self._store.read()
        if previous is None:
            raise StateFileError(
                f"there is no setup to resume in {self.state_file_path}; "
                "start a new one without --resume"
            )
        owner = owner_fields()
        self._owner = True
        self._write_now(lambda doc: mutations.resume_setup(doc, owner))
        self._setup_id = previous["setup_id"]
        self._start_heartbeat()
        logger.info("resumed setup %s", self._setup_id)
        return previous

    def join_setup(self, setup_id: str) -> None:
        """Report into a setup that another process owns, such as the orchestrator.

        Held-back progress is still flushed by a background thread, but the
        heartbeat stays the owner's.

        Raises:
            StateFileError: If the state file contains a different setup.
        """
        document = self._store.read()
        if document is None or document.get("setup_id") != setup_id:
            found = None if document is None else document.get("setup_id")
            raise StateFileError(
                f"setup {setup_id} is not in the state file {self.state_file_path} "
                f"(found {found}); start the phase without CODEMATE_SETUP_ID"
            )
        self._setup_id = setup_id
        self._owner = False
        self._start_heartbeat()

    def finish_setup(
        self, status: OverallStatus | str, error_details: str | None = None
    ) -> None:
        """Record the end of the setup as completed, failed or cancelled."""
        status = OverallStatus(status)
        self._write_now(lambda doc: mutations.finish_setup(doc, status, error_details))
        self._stop_heartbeat()
        logger.info("setup %s finished: %s", self._setup_id, status.value)

    # Phases

    def start_phase(
        self,
        phase: PhaseLike,
        steps_total: int | None = None,
        first_step: str | None = None,
    ) -> None:
        """Mark a phase running, with ``steps_total`` steps.

        Args:
            phase: The phase name.
            steps_total: The number of steps of the phase.
            first_step: Also begin this step, in the same write.
        """
        phase = Phase(phase)

        def change(document: dict[str, Any]) -> None:
            mutations.start_phase(document, phase, steps_total)
            if first_step is not None:
                mutations.record_step(document, phase, first_step, False, 0)

        self._write_now(change)

    def complete_phase(self, phase: PhaseLike, *, defer: bool = False) -> None:
        """Mark a phase completed at 100 percent.

        Args:
            phase: The phase name.
            defer: Hold the write back for the next write, as
                :meth:`complete_step` does. For a caller that writes again
                right away, such as the next phase's start or the setup's end.
        """
        phase = Phase(phase)

        def change(document: dict[str, Any]) -> None:
            mutations.end_phase(document, phase, "completed")

        if defer:
            self._hold_back(change)
        else:
            self._write_now(change)

    def fail_phase(self, phase: PhaseLike, message: str) -> None:
        """Mark a phase failed; ``error_details`` becomes "phase: message"."""
        phase = Phase(phase)
        self._write_now(lambda doc: mutations.fail_phase(doc, phase, message))

    def skip_phase(self, phase: PhaseLike, reason: str) -> None:
        """Mark a phase skipped, recording why."""
        phase = Phase(phase)
        self._write_now(lambda doc: mutations.skip_phase(doc, phase, reason))

    # Steps and progress

    def update_phase_progress(
        self,
        phase: PhaseLike,
        step_description: str,
        step_completed: bool = True,
        additional_progress: int = 0,
    ) -> None:
        """Record a step of a phase.

        Args:
            phase: The phase name.
            step_description: The step, shown as ``current_step``.
            step_completed: True records the step as completed; False starts it.
            additional_progress: Percentage points added on top of the progress
                that the completed steps give, within the current step.
        """
        phase = Phase(phase)
        self._write_now(
            lambda doc: mutations.record_step(
                doc, phase, step_description, step_completed, additional_progress
            )
        )

    def begin_step(self, phase: PhaseLike, description: str) -> None:
        """Start a step: it becomes ``current_step`` and its timer starts."""
        self.update_phase_progress(phase, description, step_completed=False)

    def complete_step(
        self, phase: PhaseLike, description: str, *, defer: bool = False
    ) -> None:
        """Record a step as completed and store its duration.

        Args:
            phase: The phase name.
            description: The step, as given to :meth:`begin_step`.
            defer: Hold the write back like a progress write, so that the next
                write (usually the next step's start) carries it. The step's
                end time is still the time of this call, and the heartbeat
                thread writes it within 1 / ``MAX_PROGRESS_WRITES_PER_SECOND``
                seconds if nothing else does.
        """
        if not defer:
            self.update_phase_progress(phase, description, step_completed=True)
            return
        phase = Phase(phase)
        ended_at = now_iso()
        self._hold_back(
            lambda doc: mutations.record_step(
                doc, phase, description, True, 0, ended_at
            )
        )

    def set_step_progress(
        self,
        phase: PhaseLike,
        fraction: float,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Set how far the current step has come, as a fraction from 0 to 1.

        Writes are coalesced to at most ``MAX_PROGRESS_WRITES_PER_SECOND``; a
        held-back value is written by the next write or the heartbeat. A write
        that cannot take the lock in time is skipped with a warning.
        """
        phase = Phase(phase)
        with self._mutex:
            self._pending[phase.value] = {"fraction": fraction, "detail": detail}
            due = time.monotonic() - self._last_progress_write
            if due < 1.0 / MAX_PROGRESS_WRITES_PER_SECOND:
                return
        self.flush()

    def add_warning(self, phase: PhaseLike, message: str) -> None:
        """Add a recoverable problem to the phase's ``warnings`` list."""
        phase = Phase(phase)
        self._write_now(
            lambda doc: mutations.append_to_phase(doc, phase, "warnings", message)
        )

    def record_fallback(self, phase: PhaseLike, message: str) -> None:
        """Record a fallback that changes what the user gets, such as pip for uv."""
        phase = Phase(phase)
        logger.warning("%s: %s", phase.value, message)
        self._write_now(
            lambda doc: mutations.append_to_phase(doc, phase, "fallbacks", message)
        )

    def set_phase_info(
        self, phase: PhaseLike, key: str, value: Any, *, defer: bool = False
    ) -> None:
        """Store an additional key in the phase object, such as ``recovery``.

        Args:
            phase: The phase name.
            key: The key; it must not be one of the contract's phase keys.
            value: Any JSON value.
            defer: Hold the write back for the next write, as
                :meth:`complete_step` does.
        """
        phase = Phase(phase)

        def change(document: dict[str, Any]) -> None:
            mutations.set_phase_key(document, phase, key, value)

        if defer:
            # A value that cannot be written would fail every later write.
            _require_json(key, value)
            self._hold_back(change)
        else:
            self._write_now(change)

    def set_info(self, key: str, value: Any) -> None:
        """Store an additional top-level key, such as ``target_version``."""
        self._write_now(lambda doc: mutations.set_top_key(doc, key, value))

    def flush(self) -> None:
        """Write held-back progress and changes now, if there are any."""
        with self._mutex:
            if not self._pending and not self._pending_changes:
                return
            self._last_progress_write = time.monotonic()
        document = self._write(lambda doc: None, timeout=self.lock_timeout)
        if document is None:
            logger.warning(
                "skipped a progress update: the state lock %s was busy for %.1f s",
                self._store.lock_path,
                self.lock_timeout,
            )

    def close(self) -> None:
        """Write held-back progress and stop the heartbeat."""
        try:
            self.flush()
        finally:
            self._stop_heartbeat()

    # Internals

    def _hold_back(self, change: Change) -> None:
        with self._mutex:
            self._pending_changes.append(change)

    def _write_now(self, change: Change) -> None:
        timeout = self.lock_timeout * STATUS_TIMEOUT_FACTOR
        document = self._write(change, timeout=timeout)
        if document is None:
            raise StateFileError(
                f"timed out after {timeout:.0f} s waiting for the state lock "
                f"{self._store.lock_path}; another process holds it"
            )

    def _write(self, change: Change, *, timeout: float) -> dict[str, Any] | None:
        with self._mutex:
            pending, self._pending = self._pending, {}
            held_back, self._pending_changes = self._pending_changes, []

        def mutate(document: dict[str, Any] | None) -> dict[str, Any]:
            if document is None:
                document = mutations.recovered_document(self._last_document, document)
            # Held-back events happened before this change. Progress belongs
            # to the step that was running, and that step may have completed.
            mutations.apply_pending(document, pending)
            for held_change in held_back:
                held_change(document)
            replacement = change(document)
            if replacement is not None:
                document = replacement
            if self._owner:
                mutations.beat(document)
            mutations.refresh(document)
            return document

        try:
            document = self._store.transact(mutate, timeout=timeout)
        except Exception:
            self._restore(pending, held_back)
            raise
        if document is None:
            self._restore(pending, held_back)
            return None

        self._last_document = document
        self._last_write_at = time.monotonic()
        return document

    def _restore(
        self, pending: dict[str, dict[str, Any]], held_back: list[Change]
    ) -> None:
        # Keep the held-back events for the next write.
        with self._mutex:
            for key, value in pending.items():
                self._pending.setdefault(key, value)
            self._pending_changes[:0] = held_back

    def _start_heartbeat(self) -> None:
        self._stop_heartbeat()
        self._heartbeat_stop = threading.Event()
        thread = threading.Thread(
            target=self._heartbeat_loop,
            args=(self._heartbeat_stop,),
            name="setup-heartbeat",
            daemon=True,
        )
        self._heartbeat_thread = thread
        thread.start()

    def _stop_heartbeat(self) -> None:
        self._heartbeat_stop.set()
        thread = self._heartbeat_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.lock_timeout * STATUS_TIMEOUT_FACTOR)
        self._heartbeat_thread = None

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        while not stop.wait(1.0 / MAX_PROGRESS_WRITES_PER_SECOND):
            try:
                # Every write of the owner refreshes the heartbeat, so only a
                # quiet interval needs a write of its own.
                quiet = time.monotonic() - self._last_write_at
                if self._owner and quiet >= HEARTBEAT_INTERVAL:
                    self._write(lambda doc: None, timeout=self.lock_timeout)
                else:
                    self.flush()
            except StateFileError as e:
                logger.warning("heartbeat write failed: %s", e)
            except Exception:  # the heartbeat must never end the setup
                logger.exception("heartbeat write failed")


def _require_json(key: str, value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"the value of {key!r} is not valid JSON: {e}") from e


_trackers: dict[Path, SetupTracker] = {}
_trackers_lock = threading.Lock()


def get_tracker(state_file_path: str | os.PathLike[str] | None = None) -> SetupTracker:
    """Return the process-wide tracker for a state file, creating it once."""
    if state_file_path is None:
        path = resolve_home() / "setup_state.json"
    else:
        path = Path(state_file_path).expanduser().absolute()
    with _trackers_lock:
        tracker = _trackers.get(path)
        if tracker is None:
            tracker = SetupTracker(path)
            _trackers[path] = tracker
        return tracker
