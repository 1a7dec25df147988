"""``--status`` and ``--wait``: reading a setup from the state file."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from codemate_setup.config import HomeLayout, home_flag
from codemate_setup.errors import ExitCode
from codemate_setup.setuplock import setup_lock_held
from codemate_setup.state import Liveness, OverallStatus, assess
from codemate_setup.state.report import describe_status, format_state
from codemate_setup.state.store import StateStore

WAIT_POLL_SECONDS = 0.5

_EXIT_BY_STATUS = {
    OverallStatus.COMPLETED.value: ExitCode.OK,
    OverallStatus.FAILED.value: ExitCode.FAILED,
    OverallStatus.CANCELLED.value: ExitCode.INTERRUPTED,
}


def show_status(layout: HomeLayout, *, as_json: bool) -> int:
    """Print the current setup and return 0; a dead setup reads "interrupted".

    Raises:
        StateFileError: If the state file is corrupt.
    """
    document = StateStore(layout.state_file).read_for_report()
    print(render(document, layout, as_json=as_json))
    return ExitCode.OK


def wait_for_setup(layout: HomeLayout, *, timeout: float | None, as_json: bool) -> int:
    """Block until the setup in ``layout`` ends and return its exit code.

    A setup whose orchestrator died ends the wait as interrupted (exit 1) once
    no phase child holds the setup lock any more, so that a setup started
    right after the wait is not refused.
    Exit codes: 0 completed, 1 failed, interrupted or timed out, 130 cancelled.

    Raises:
        StateFileError: If the state file is corrupt.
    """
    store = StateStore(layout.state_file)
    deadline = None if timeout is None else time.monotonic() + timeout

    while True:
        document = store.read_for_report()
        liveness = assess(document)
        stopping = liveness is Liveness.INTERRUPTED and setup_lock_held(layout)
        if liveness is not Liveness.RUNNING and not stopping:
            break
        if deadline is not None and time.monotonic() >= deadline:
            print(render(document, layout, as_json=as_json))
            # The line goes to stderr so that --json leaves one document on stdout.
            state = "was interrupted and its phase process is still stopping"
            if not stopping:
                state = f"is still running (pid {document.get('pid')})"
            print(
                f"error: timed out after {timeout:g} s: setup "
                f"{document['setup_id']} {state}; wait again with a longer --timeout",
                file=sys.stderr,
            )
            return ExitCode.FAILED
        time.sleep(WAIT_POLL_SECONDS)

    print(render(document, layout, as_json=as_json))
    if document is None or liveness is Liveness.INTERRUPTED:
        return ExitCode.FAILED
    return _EXIT_BY_STATUS.get(document["overall_status"], ExitCode.FAILED)


def render(
    document: dict[str, Any] | None, layout: HomeLayout, *, as_json: bool
) -> str:
    """Render the state for a person, or as JSON with a ``reported_status`` key."""
    if document is None:
        if as_json:
            return json.dumps({"reported_status": "none", "state": None})
        return f"No setup has run yet in {layout.home}."

    if as_json:
        return json.dumps(
            {"reported_status": describe_status(document), "state": document}, indent=2
        )
    text = format_state(document, layout.home)
    if describe_status(document) == "interrupted" and setup_lock_held(layout):
        text += (
            "\n  a phase process of this setup is still stopping and holds the "
            "setup lock, so a new setup exits with code 3 until it ends; wait "
            f"for it with `setup_orchestrator.py --wait{home_flag(layout.home)}`"
        )
    return text
