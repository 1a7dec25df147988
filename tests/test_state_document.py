"""The state document's shape and progress rules after each kind of tracker call."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from codemate_setup.state import OverallStatus, Phase, SetupTracker
from codemate_setup.state.schema import overall_progress, shape_problem, step_progress

TOP_LEVEL_TYPES = {
    "setup_id": str,
    "timestamp": str,
    "overall_status": str,
    "overall_progress": int,
    "phases": dict,
    "error_details": (str, type(None)),
    "metadata": dict,
}
PHASE_TYPES = {
    "status": str,
    "progress": int,
    "current_step": str,
    "steps_completed": list,
    "steps_total": int,
    "start_time": (str, type(None)),
    "end_time": (str, type(None)),
}
METADATA_KEYS = {"version", "platform", "python_version"}


@pytest.fixture
def tracker(tmp_path: Path) -> SetupTracker:
    tracker = SetupTracker(tmp_path / "setup_state.json")
    yield tracker
    tracker.close()


def read(tracker: SetupTracker) -> dict:
    return json.loads(tracker.state_file_path.read_text())


def assert_contract_shape(document: dict) -> None:
    for key, expected in TOP_LEVEL_TYPES.items():
        assert isinstance(document[key], expected), key
        assert not isinstance(document[key], bool), key
    assert set(document["phases"]) == {phase.value for phase in Phase}
    for phase_doc in document["phases"].values():
        for key, expected in PHASE_TYPES.items():
            assert isinstance(phase_doc[key], expected), key
        assert all(isinstance(step, str) for step in phase_doc["steps_completed"])
        assert 0 <= phase_doc["progress"] <= 100
    assert set(document["metadata"]) >= METADATA_KEYS
    assert 0 <= document["overall_progress"] <= 100
    stamp = dt.datetime.fromisoformat(document["timestamp"])
    assert stamp.utcoffset() is not None
    assert "." in document["timestamp"]
    assert shape_problem(document) is None


CALLS = {
    "start_setup": lambda t: None,
    "start_phase": lambda t: t.start_phase(Phase.CODEBASE_UPDATE, 10),
    "begin_step": lambda t: t.begin_step("codebase_update", "Fetching manifest"),
    "complete_step": lambda t: t.complete_step("codebase_update", "Fetching manifest"),
    "update_phase_progress": lambda t: t.update_phase_progress(
        "codebase_update", "Downloading application files", False, 5
    ),
    "set_step_progress": lambda t: (
        t.set_step_progress(
            "codebase_update", 0.5, {"bytes_done": 5, "bytes_total": 10}
        ),
        t.flush(),
    ),
    "add_warning": lambda t: t.add_warning("codebase_update", "low disk space"),
    "record_fallback": lambda t: t.record_fallback("codebase_update", "full install"),
    "complete_phase": lambda t: t.complete_phase("codebase_update"),
    "fail_phase": lambda t: t.fail_phase("codebase_update", "Failed to download"),
    "skip_phase": lambda t: t.skip_phase("environment_verification", "not installed"),
    "finish_completed": lambda t: t.finish_setup(OverallStatus.COMPLETED),
    "finish_failed": lambda t: t.finish_setup("failed", "codebase_update: failed"),
    "finish_cancelled": lambda t: t.finish_setup(OverallStatus.CANCELLED),
}


@pytest.mark.parametrize("call", list(CALLS), ids=list(CALLS))
def test_document_shape_after_each_call(tracker: SetupTracker, call: str) -> None:
    tracker.start_setup("3.0.0")
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    CALLS[call](tracker)
    assert_contract_shape(read(tracker))


def test_start_setup_resets_both_phases(tracker: SetupTracker) -> None:
    tracker.start_setup("2.0.0")
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.complete_step(Phase.CODEBASE_UPDATE, "one")
    first_id = read(tracker)["setup_id"]
    tracker.start_setup("3.0.0")
    document = read(tracker)
    assert document["setup_id"] != first_id
    assert document["phases"]["codebase_update"]["status"] == "pending"
    assert document["phases"]["codebase_update"]["steps_completed"] == []
    assert document["phases"]["environment_verification"]["status"] == "pending"
    assert document["target_version"] == "3.0.0"


def test_start_setup_records_owner_process(tracker: SetupTracker) -> None:
    import os

    tracker.start_setup()
    document = read(tracker)
    assert document["pid"] == os.getpid()
    assert isinstance(document["process_start_time"], float)
    assert isinstance(document["heartbeat"], str)


def test_completed_steps_move_progress(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    for number in range(3):
        tracker.complete_step(Phase.CODEBASE_UPDATE, f"step {number}")
    phase = read(tracker)["phases"]["codebase_update"]
    assert phase["progress"] == 30
    assert phase["steps_completed"] == ["step 0", "step 1", "step 2"]
    assert phase["current_step"] == "step 2"


def test_step_fraction_sets_progress_within_step(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.complete_step(Phase.CODEBASE_UPDATE, "one")
    tracker.begin_step(Phase.CODEBASE_UPDATE, "Downloading application files")
    tracker.set_step_progress(Phase.CODEBASE_UPDATE, 0.5, {"bytes_done": 50})
    tracker.flush()
    phase = read(tracker)["phases"]["codebase_update"]
    assert phase["progress"] == 15
    assert phase["detail"] == {"bytes_done": 50}


def test_progress_never_decreases_while_running(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.begin_step(Phase.CODEBASE_UPDATE, "Downloading application files")
    tracker.set_step_progress(Phase.CODEBASE_UPDATE, 0.9)
    tracker.flush()
    tracker.set_step_progress(Phase.CODEBASE_UPDATE, 0.1)
    tracker.flush()
    assert read(tracker)["phases"]["codebase_update"]["progress"] == 9


def test_running_phase_stays_below_hundred(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 2)
    tracker.complete_step(Phase.CODEBASE_UPDATE, "one")
    tracker.complete_step(Phase.CODEBASE_UPDATE, "two")
    tracker.update_phase_progress(Phase.CODEBASE_UPDATE, "three", False, 50)
    assert read(tracker)["phases"]["codebase_update"]["progress"] == 99


def test_overall_progress_is_weighted_mean(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    for number in range(4):
        tracker.complete_step(Phase.CODEBASE_UPDATE, f"step {number}")
    assert read(tracker)["overall_progress"] == 20
    tracker.complete_phase(Phase.CODEBASE_UPDATE)
    assert read(tracker)["overall_progress"] == 50


def test_overall_hundred_only_when_completed(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.complete_phase(Phase.CODEBASE_UPDATE)
    tracker.skip_phase(Phase.ENVIRONMENT_VERIFICATION, "not requested")
    assert read(tracker)["overall_progress"] == 99
    tracker.finish_setup(OverallStatus.COMPLETED)
    assert read(tracker)["overall_progress"] == 100


def test_failed_setup_never_reaches_hundred(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.complete_phase(Phase.CODEBASE_UPDATE)
    tracker.start_phase(Phase.ENVIRONMENT_VERIFICATION, 8)
    tracker.complete_phase(Phase.ENVIRONMENT_VERIFICATION)
    tracker.finish_setup(OverallStatus.FAILED, "environment_verification: failed")
    assert read(tracker)["overall_progress"] == 99


def test_fail_phase_sets_error_details(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.fail_phase(Phase.CODEBASE_UPDATE, "Failed to retrieve system information")
    document = read(tracker)
    assert document["error_details"] == (
        "codebase_update: Failed to retrieve system information"
    )
    assert document["phases"]["codebase_update"]["status"] == "failed"


def test_finish_keeps_earlier_error_details(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.fail_phase(Phase.CODEBASE_UPDATE, "Failed to download main.py")
    tracker.finish_setup(OverallStatus.FAILED)
    assert (
        read(tracker)["error_details"] == "codebase_update: Failed to download main.py"
    )


def test_cancel_marks_running_phase_failed(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.finish_setup(
        OverallStatus.CANCELLED, "codebase_update: cancelled by SIGINT"
    )
    document = read(tracker)
    assert document["overall_status"] == "cancelled"
    assert document["phases"]["codebase_update"]["status"] == "failed"


def test_step_timings_record_durations(tracker: SetupTracker) -> None:
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.begin_step(Phase.CODEBASE_UPDATE, "Fetching installation manifest")
    tracker.complete_step(Phase.CODEBASE_UPDATE, "Fetching installation manifest")
    tracker.complete_step(Phase.CODEBASE_UPDATE, "Verifying file integrity")
    timings = read(tracker)["phases"]["codebase_update"]["step_timings"]
    assert [entry["step"] for entry in timings] == [
        "Fetching installation manifest",
        "Verifying file integrity",
    ]
    assert all(entry["duration_seconds"] >= 0 for entry in timings)
    assert timings[1]["started_at"] == timings[0]["ended_at"]


def test_progress_writes_are_coalesced(
    tracker: SetupTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from codemate_setup.state.store import StateStore

    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.begin_step(Phase.CODEBASE_UPDATE, "Downloading application files")
    writes = []
    real_write = StateStore._write
    monkeypatch.setattr(
        StateStore,
        "_write",
        lambda store, doc: (writes.append(1), real_write(store, doc)),
    )
    started = time.monotonic()
    for step in range(1, 501):
        tracker.set_step_progress(Phase.CODEBASE_UPDATE, step / 1000)
    elapsed = time.monotonic() - started
    # At most ten progress writes a second, plus one heartbeat a second.
    assert len(writes) <= int(elapsed * 11) + 3
    tracker.flush()
    assert read(tracker)["phases"]["codebase_update"]["progress"] == 5


def test_heldback_progress_written_by_heartbeat(tracker: SetupTracker) -> None:
    import time

    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.set_step_progress(Phase.CODEBASE_UPDATE, 0.2)
    tracker.set_step_progress(Phase.CODEBASE_UPDATE, 0.6)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if read(tracker)["phases"]["codebase_update"]["progress"] == 6:
            break
        time.sleep(0.05)
    assert read(tracker)["phases"]["codebase_update"]["progress"] == 6


def test_heartbeat_refreshes_while_running(tracker: SetupTracker) -> None:
    import time

    tracker.start_setup()
    first = read(tracker)["heartbeat"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and read(tracker)["heartbeat"] == first:
        time.sleep(0.1)
    assert read(tracker)["heartbeat"] != first


@pytest.mark.parametrize(
    ("completed", "total", "fraction", "expected"),
    [
        (0, 10, 0.0, 0),
        (1, 10, 0.5, 15),
        (10, 10, 0.0, 99),
        (3, 0, 0.0, 0),
        (0, 8, 2.0, 12),
    ],
)
def test_step_progress_arithmetic(
    completed: int, total: int, fraction: float, expected: int
) -> None:
    assert step_progress(completed, total, fraction) == expected


def test_overall_progress_counts_skipped_as_done() -> None:
    from codemate_setup.state.schema import new_state

    document = new_state("setup_1")
    document["overall_status"] = "running"
    document["phases"]["codebase_update"]["status"] = "skipped"
    document["phases"]["environment_verification"]["progress"] = 40
    assert overall_progress(document) == 70
