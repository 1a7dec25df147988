"""The state file document: statuses, its shape, and the progress arithmetic.

Everything here is pure: no I/O, no clock reads except :func:`now_iso`.
"""

from __future__ import annotations

import datetime as dt
import math
import platform
import sys
from enum import Enum
from typing import Any

SCHEMA_VERSION = "1.0"


class Phase(str, Enum):
    """The two phases of a setup, in the order they run."""

    CODEBASE_UPDATE = "codebase_update"
    ENVIRONMENT_VERIFICATION = "environment_verification"


class PhaseStatus(str, Enum):
    """Status of one phase, as stored in the state file."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class OverallStatus(str, Enum):
    """Status of the whole setup, as stored in the state file."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_OVERALL = {
    OverallStatus.COMPLETED,
    OverallStatus.FAILED,
    OverallStatus.CANCELLED,
}
FINISHED_PHASE = {PhaseStatus.COMPLETED, PhaseStatus.FAILED, PhaseStatus.SKIPPED}

# Share of each phase in overall_progress. The update moves bytes and files; the
# verification may build an environment and install packages, so both count
# half. A skipped phase counts as fully done.
PHASE_WEIGHTS = {Phase.CODEBASE_UPDATE: 0.5, Phase.ENVIRONMENT_VERIFICATION: 0.5}

DEFAULT_STEPS_TOTAL = {Phase.CODEBASE_UPDATE: 10, Phase.ENVIRONMENT_VERIFICATION: 8}

INITIAL_STEP = {
    Phase.CODEBASE_UPDATE: "Preparing for codebase update",
    Phase.ENVIRONMENT_VERIFICATION: "Preparing for environment verification",
}

# Keys and value types of the contract's example document; the shape check
# accepts any additional keys.
_TOP_LEVEL_TYPES: dict[str, tuple[type, ...]] = {
    "setup_id": (str,),
    "timestamp": (str,),
    "overall_status": (str,),
    "overall_progress": (int,),
    "phases": (dict,),
    "error_details": (str, type(None)),
    "metadata": (dict,),
}
_PHASE_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str,),
    "progress": (int,),
    "current_step": (str,),
    "steps_completed": (list,),
    "steps_total": (int,),
    "start_time": (str, type(None)),
    "end_time": (str, type(None)),
}


def now_iso() -> str:
    """Return the current UTC time in ISO 8601 with microseconds and offset."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def parse_iso(text: str) -> dt.datetime:
    """Parse a timestamp written by :func:`now_iso`.

    Raises:
        ValueError: If the text is not an ISO 8601 timestamp.
    """
    return dt.datetime.fromisoformat(text)


def new_phase(phase: Phase) -> dict[str, Any]:
    """Return a pending phase object."""
    return {
        "status": PhaseStatus.PENDING.value,
        "progress": 0,
        "current_step": INITIAL_STEP[phase],
        "steps_completed": [],
        "steps_total": DEFAULT_STEPS_TOTAL[phase],
        "start_time": None,
        "end_time": None,
        "warnings": [],
        "detail": None,
        "step_timings": [],
    }


def new_state(setup_id: str) -> dict[str, Any]:
    """Return the document of a new setup: both phases pending."""
    return {
        "setup_id": setup_id,
        "timestamp": now_iso(),
        "overall_status": OverallStatus.PENDING.value,
        "overall_progress": 0,
        "phases": {phase.value: new_phase(phase) for phase in Phase},
        "error_details": None,
        "metadata": {
            "version": SCHEMA_VERSION,
            "platform": sys.platform,
            "python_version": platform.python_version(),
        },
    }


def shape_problem(document: object) -> str | None:
    """Describe how a parsed document departs from the contract's shape.

    Returns:
        None when every required key is present with its type, else one
        sentence naming the first key that is missing or wrong.
    """
    if not isinstance(document, dict):
        return f"expected a JSON object, got {type(document).__name__}"

    problem = _keys_problem(document, _TOP_LEVEL_TYPES, "")
    if problem:
        return problem

    for phase in Phase:
        phase_doc = document["phases"].get(phase.value)
        if not isinstance(phase_doc, dict):
            return f"phase {phase.value!r} is missing"
        problem = _keys_problem(phase_doc, _PHASE_TYPES, f"{phase.value}.")
        if problem:
            return problem
        if phase_doc["status"] not in {s.value for s in PhaseStatus}:
            return f"{phase.value}.status has unknown value {phase_doc['status']!r}"

    if document["overall_status"] not in {s.value for s in OverallStatus}:
        return f"overall_status has unknown value {document['overall_status']!r}"

    return None


def _keys_problem(
    document: dict[str, Any], types: dict[str, tuple[type, ...]], prefix: str
) -> str | None:
    for key, allowed in types.items():
        if key not in document:
            return f"key {prefix}{key} is missing"
        value = document[key]
        # bool is an int subclass, but a progress of true is not a number.
        if isinstance(value, bool) or not isinstance(value, allowed):
            return f"key {prefix}{key} has the wrong type {type(value).__name__}"
    return None


def step_progress(completed_steps: int, steps_total: int, fraction: float = 0.0) -> int:
    """Return a running phase's progress after ``completed_steps`` steps.

    ``fraction`` (0 to 1) is how far the current step has come. The result is
    capped at 99: only completing the phase reaches 100.
    """
    if steps_total <= 0:
        return 0
    fraction = min(max(fraction, 0.0), 1.0)
    value = math.floor(100 * (completed_steps + fraction) / steps_total)
    return clamp_running(value)


def clamp_running(value: float) -> int:
    """Clamp a running phase's progress to an integer from 0 to 99."""
    return int(min(max(value, 0), 99))


def overall_progress(document: dict[str, Any]) -> int:
    """Return the weighted mean of phase progress, as an integer 0 to 100.

    A skipped or completed phase counts 100. The result reaches 100 only when
    the overall status is completed, and it never drops below the value the
    document already holds.
    """
    total = 0.0
    for phase, weight in PHASE_WEIGHTS.items():
        phase_doc = document["phases"][phase.value]
        if phase_doc["status"] in (
            PhaseStatus.SKIPPED.value,
            PhaseStatus.COMPLETED.value,
        ):
            total += weight * 100
        else:
            total += weight * phase_doc["progress"]

    if document["overall_status"] == OverallStatus.COMPLETED.value:
        return 100

    value = min(math.floor(total), 99)
    return max(value, min(document.get("overall_progress", 0), 99))
