"""Child-process helpers for the state tracker tests.

Run as ``python tests/state_writer.py MODE STATE_FILE ...`` with the project root on
``PYTHONPATH``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from codemate_setup.state import SetupTracker, StateStore


def write_steps(state_file: str, writer: str, count: str) -> None:
    """Record ``count`` completed steps named after ``writer``."""
    tracker = SetupTracker(state_file, lock_timeout=30.0)
    for number in range(int(count)):
        tracker.update_phase_progress(
            "codebase_update", f"writer {writer} step {number}", step_completed=True
        )


def write_forever(state_file: str) -> None:
    """Start a setup and write steps and progress until killed."""
    tracker = SetupTracker(state_file)
    tracker.start_setup("3.0.0")
    tracker.start_phase("codebase_update", 100_000)
    number = 0
    while True:
        tracker.update_phase_progress("codebase_update", f"step {number}", True)
        tracker.set_step_progress("codebase_update", (number % 10) / 10)
        number += 1


def read_until(state_file: str, stop_file: str, result_file: str) -> None:
    """Read the state without a lock until ``stop_file`` exists, recording each read."""
    path = Path(state_file)
    reads = 0
    failures: list[str] = []
    decreases: list[str] = []
    last_progress = -1
    while not Path(stop_file).exists():
        try:
            document = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue
        except ValueError as e:
            failures.append(str(e))
            continue
        reads += 1
        progress = document["phases"]["codebase_update"]["progress"]
        if progress < last_progress:
            decreases.append(f"{last_progress} -> {progress}")
        last_progress = progress
    Path(result_file).write_text(
        json.dumps({"reads": reads, "failures": failures, "decreases": decreases})
    )


def take_lock_once(state_file: str) -> None:
    """Exit 0 when the state lock is free right now, 1 when it is held."""
    store = StateStore(Path(state_file))
    written = store.transact(lambda doc: doc, timeout=0)
    sys.exit(0 if written is not None else 1)


MODES = {
    "steps": write_steps,
    "forever": write_forever,
    "read": read_until,
    "lock": take_lock_once,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
