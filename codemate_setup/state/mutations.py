"""Pure changes to the state document, applied under the writer lock."""

from __future__ import annotations

import copy
import logging
from typing import Any

from codemate_setup.state import schema
from codemate_setup.state.schema import (
    FINISHED_PHASE,
    OverallStatus,
    Phase,
    PhaseStatus,
    now_iso,
)

logger = logging.getLogger(__name__)


def recovered_document(
    last_written: dict[str, Any] | None, on_disk: dict[str, Any] | None
) -> dict[str, Any]:
    """Return the document to continue from when the file is missing or corrupt.

    A tracker that wrote before continues from its own last document, so a
    setup survives its state file being deleted or corrupted.
    """
    if on_disk is not None:
        return on_disk
    if last_written is not None:
        return copy.deepcopy(last_written)
    return schema.new_state(setup_id="setup_unknown")


def refresh(document: dict[str, Any]) -> None:
    """Update the timestamp and the overall progress after a change."""
    document["timestamp"] = now_iso()
    document["overall_progress"] = schema.overall_progress(document)


def beat(document: dict[str, Any]) -> None:
    """Refresh the owner's heartbeat."""
    document["heartbeat"] = now_iso()


def start_setup(
    _document: dict[str, Any] | None,
    setup_id: str,
    target_version: str | None,
    owner: dict[str, Any],
) -> dict[str, Any]:
    """Return a fresh running setup with both phases pending."""
    document = schema.new_state(setup_id)
    document["overall_status"] = OverallStatus.RUNNING.value
    document["target_version"] = target_version
    document["started_at"] = document["timestamp"]
    document.update(owner)
    return document


def resume_setup(document: dict[str, Any], owner: dict[str, Any]) -> None:
    """Make ``document`` a running setup owned by this process again."""
    document.update(owner)
    document["overall_status"] = OverallStatus.RUNNING.value
    document["error_details"] = None
    document.pop("finished_at", None)
    resumes = document.setdefault("resumed_at", [])
    resumes.append(now_iso())


def finish_setup(
    document: dict[str, Any], status: OverallStatus, error_details: str | None
) -> None:
    """Set the overall status; keep an earlier error sentence unless given one."""
    document["overall_status"] = status.value
    if error_details is not None:
        document["error_details"] = error_details
    elif status is OverallStatus.COMPLETED:
        document["error_details"] = None
    document["finished_at"] = now_iso()

    for phase in Phase:
        phase_doc = document["phases"][phase.value]
        if (
            phase_doc["status"] == PhaseStatus.RUNNING.value
            and status is not OverallStatus.COMPLETED
        ):
            # A phase cannot go on running once its setup ended.
            phase_doc["status"] = PhaseStatus.FAILED.value
            phase_doc["end_time"] = now_iso()
            _close_open_step(phase_doc)


def start_phase(
    document: dict[str, Any], phase: Phase, steps_total: int | None
) -> None:
    """Mark a phase running from zero."""
    phase_doc = _phase(document, phase)
    phase_doc.update(schema.new_phase(phase))
    if steps_total is not None:
        phase_doc["steps_total"] = int(steps_total)
    phase_doc["status"] = PhaseStatus.RUNNING.value
    phase_doc["start_time"] = now_iso()
    if document["overall_status"] == OverallStatus.PENDING.value:
        document["overall_status"] = OverallStatus.RUNNING.value


def end_phase(document: dict[str, Any], phase: Phase, status: str) -> None:
    """Mark a phase completed."""
    phase_doc = _phase(document, phase)
    _close_open_step(phase_doc)
    phase_doc["status"] = PhaseStatus(status).value
    phase_doc["progress"] = 100
    phase_doc["detail"] = None
    phase_doc["end_time"] = now_iso()


def fail_phase(document: dict[str, Any], phase: Phase, message: str) -> None:
    """Mark a phase failed; the first failure of a setup names ``error_details``."""
    phase_doc = _phase(document, phase)
    _close_open_step(phase_doc)
    phase_doc["status"] = PhaseStatus.FAILED.value
    phase_doc["end_time"] = now_iso()
    phase_doc["detail"] = None
    phase_doc["error"] = message
    # The first failure explains the setup; a later one is in its phase's "error".
    if document.get("error_details") is None:
        document["error_details"] = f"{phase.value}: {message}"


def skip_phase(document: dict[str, Any], phase: Phase, reason: str) -> None:
    """Mark a phase skipped, with the reason in ``skip_reason``."""
    phase_doc = _phase(document, phase)
    phase_doc["status"] = PhaseStatus.SKIPPED.value
    phase_doc["current_step"] = f"Skipped: {reason}"
    phase_doc["skip_reason"] = reason
    phase_doc["end_time"] = now_iso()


def record_step(
    document: dict[str, Any],
    phase: Phase,
    description: str,
    completed: bool,
    additional_progress: int,
    at: str | None = None,
) -> None:
    """Start or complete a step and move the phase's progress forward.

    Args:
        at: When it happened, as an ISO 8601 timestamp; by default now.
    """
    phase_doc = _phase(document, phase)
    _ensure_running(document, phase_doc)
    timings = phase_doc.setdefault("step_timings", [])
    now = at or now_iso()

    if completed:
        if not _close_open_step(phase_doc, description, now):
            timings.append(_timing(description, _last_end(phase_doc) or now, now))
        phase_doc["steps_completed"].append(description)
        phase_doc["detail"] = None
    elif phase_doc["current_step"] != description or not _open_step(phase_doc):
        _close_open_step(phase_doc, None, now)
        timings.append(_timing(description, now, None))
        phase_doc["detail"] = None

    phase_doc["current_step"] = description
    base = schema.step_progress(
        len(phase_doc["steps_completed"]), phase_doc["steps_total"]
    )
    _raise_progress(phase_doc, base + int(additional_progress))


def apply_pending(document: dict[str, Any], pending: dict[str, dict[str, Any]]) -> None:
    """Apply held-back step progress (fraction and detail) per phase."""
    for phase_name, values in pending.items():
        phase_doc = document["phases"].get(phase_name)
        if phase_doc is None or phase_doc["status"] != PhaseStatus.RUNNING.value:
            continue
        value = schema.step_progress(
            len(phase_doc["steps_completed"]),
            phase_doc["steps_total"],
            values["fraction"],
        )
        _raise_progress(phase_doc, value)
        if values.get("detail") is not None:
            phase_doc["detail"] = values["detail"]


def append_to_phase(
    document: dict[str, Any], phase: Phase, key: str, message: str
) -> None:
    """Append a message to a list in the phase object, once."""
    items = _phase(document, phase).setdefault(key, [])
    if message not in items:
        items.append(message)


def set_phase_key(document: dict[str, Any], phase: Phase, key: str, value: Any) -> None:
    """Set an additional key of a phase object."""
    _phase(document, phase)[key] = value


def set_top_key(document: dict[str, Any], key: str, value: Any) -> None:
    """Set an additional top-level key."""
    document[key] = value


def _phase(document: dict[str, Any], phase: Phase) -> dict[str, Any]:
    return document["phases"][phase.value]


def _ensure_running(document: dict[str, Any], phase_doc: dict[str, Any]) -> None:
    if phase_doc["status"] == PhaseStatus.PENDING.value:
        phase_doc["status"] = PhaseStatus.RUNNING.value
        phase_doc["start_time"] = now_iso()
    if document["overall_status"] == OverallStatus.PENDING.value:
        document["overall_status"] = OverallStatus.RUNNING.value


def _raise_progress(phase_doc: dict[str, Any], value: int) -> None:
    if phase_doc["status"] in {s.value for s in FINISHED_PHASE}:
        return
    # Progress of a running phase never decreases, and 100 means completed.
    phase_doc["progress"] = max(phase_doc["progress"], schema.clamp_running(value))


def _timing(step: str, started_at: str, ended_at: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "step": step,
        "started_at": started_at,
        "ended_at": ended_at,
    }
    entry["duration_seconds"] = _seconds_between(started_at, ended_at)
    return entry


def _open_step(phase_doc: dict[str, Any]) -> dict[str, Any] | None:
    timings = phase_doc.get("step_timings") or []
    if timings and timings[-1].get("ended_at") is None:
        return timings[-1]
    return None


def _close_open_step(
    phase_doc: dict[str, Any], step: str | None = None, now: str | None = None
) -> bool:
    entry = _open_step(phase_doc)
    if entry is None or (step is not None and entry["step"] != step):
        return False
    entry["ended_at"] = now or now_iso()
    entry["duration_seconds"] = _seconds_between(entry["started_at"], entry["ended_at"])
    return True


def _last_end(phase_doc: dict[str, Any]) -> str | None:
    timings = phase_doc.get("step_timings") or []
    if timings:
        return timings[-1].get("ended_at")
    return phase_doc.get("start_time")


def _seconds_between(start: str, end: str | None) -> float | None:
    if end is None:
        return None
    try:
        return round(
            (schema.parse_iso(end) - schema.parse_iso(start)).total_seconds(), 6
        )
    except (TypeError, ValueError):
        return None
