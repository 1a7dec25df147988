"""Held-back tracker writes: step completions and progress, and their order."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from codemate_setup.errors import StateFileError
from codemate_setup.state import Phase, SetupTracker, StateStore
from codemate_setup.state.liveness import HEARTBEAT_INTERVAL
from codemate_setup.state.schema import parse_iso
from codemate_setup.steps import StepReporter

PHASE = Phase.CODEBASE_UPDATE


def read_phase(path: Path) -> dict:
    return json.loads(path.read_text())["phases"][PHASE.value]


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    owner = SetupTracker(tmp_path / "setup_state.json")
    owner.start_setup("3.0.0")
    owner.start_phase(PHASE, 4)
    owner.close()
    return owner.state_file_path


@pytest.fixture
def quiet_tracker(state_file: Path) -> SetupTracker:
    # Neither started nor joined, so no heartbeat thread writes behind the test.
    tracker = SetupTracker(state_file)
    yield tracker
    tracker.close()


def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    writes: list[int] = []
    real_replace = StateStore._replace_file

    def counted(self: StateStore, data: bytes) -> None:
        writes.append(len(data))
        real_replace(self, data)

    monkeypatch.setattr(StateStore, "_replace_file", counted)
    return writes


def test_held_progress_stays_within_completed_step(
    quiet_tracker: SetupTracker, state_file: Path
) -> None:
    quiet_tracker.begin_step(PHASE, "a")
    quiet_tracker.set_step_progress(PHASE, 0.1)
    quiet_tracker.set_step_progress(PHASE, 0.9)
    quiet_tracker.complete_step(PHASE, "a")
    assert read_phase(state_file)["progress"] == 25


def test_deferred_completion_not_written_alone(
    quiet_tracker: SetupTracker, state_file: Path
) -> None:
    quiet_tracker.begin_step(PHASE, "a")
    quiet_tracker.complete_step(PHASE, "a", defer=True)
    assert read_phase(state_file)["steps_completed"] == []


def test_deferred_completion_shares_next_write(
    quiet_tracker: SetupTracker, state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet_tracker.begin_step(PHASE, "a")
    writes = count_writes(monkeypatch)
    quiet_tracker.complete_step(PHASE, "a", defer=True)
    quiet_tracker.begin_step(PHASE, "b")
    phase_doc = read_phase(state_file)
    assert len(writes) == 1
    assert phase_doc["steps_completed"] == ["a"]
    assert phase_doc["current_step"] == "b"
    assert phase_doc["progress"] == 25


def test_deferred_completion_keeps_call_time(
    quiet_tracker: SetupTracker, state_file: Path
) -> None:
    quiet_tracker.begin_step(PHASE, "a")
    quiet_tracker.complete_step(PHASE, "a", defer=True)
    time.sleep(0.3)
    quiet_tracker.begin_step(PHASE, "b")
    first, second = read_phase(state_file)["step_timings"]
    gap = parse_iso(second["started_at"]) - parse_iso(first["ended_at"])
    assert gap.total_seconds() >= 0.25


def test_deferred_completion_written_by_heartbeat(state_file: Path) -> None:
    tracker = SetupTracker(state_file)
    tracker.resume_setup()
    tracker.begin_step(PHASE, "a")
    tracker.complete_step(PHASE, "a", defer=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if read_phase(state_file)["steps_completed"] == ["a"]:
            break
        time.sleep(0.02)
    tracker.close()
    assert read_phase(state_file)["steps_completed"] == ["a"]


def test_deferred_completion_before_phase_end(
    quiet_tracker: SetupTracker, state_file: Path
) -> None:
    quiet_tracker.begin_step(PHASE, "a")
    quiet_tracker.complete_step(PHASE, "a", defer=True)
    quiet_tracker.complete_phase(PHASE)
    phase_doc = read_phase(state_file)
    assert phase_doc["steps_completed"] == ["a"]
    assert phase_doc["step_timings"][0]["ended_at"] is not None


def test_deferred_completion_kept_after_busy_lock(
    quiet_tracker: SetupTracker, state_file: Path
) -> None:
    quiet_tracker.begin_step(PHASE, "a")
    quiet_tracker.complete_step(PHASE, "a", defer=True)
    lock = StateStore(state_file)._lock
    token = lock.acquire(1.0)
    quiet_tracker.lock_timeout = 0.05
    quiet_tracker.flush()
    lock.release(token)
    quiet_tracker.begin_step(PHASE, "b")
    assert read_phase(state_file)["steps_completed"] == ["a"]


def test_start_phase_begins_first_step(
    quiet_tracker: SetupTracker, state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = count_writes(monkeypatch)
    quiet_tracker.start_phase(PHASE, 4, first_step="a")
    phase_doc = read_phase(state_file)
    assert len(writes) == 1
    assert phase_doc["status"] == "running"
    assert phase_doc["current_step"] == "a"
    assert phase_doc["step_timings"][0]["ended_at"] is None


def test_deferred_phase_info_joins_next_write(
    quiet_tracker: SetupTracker, state_file: Path
) -> None:
    quiet_tracker.set_phase_info(PHASE, "summary", {"fixed": 1}, defer=True)
    assert "summary" not in read_phase(state_file)
    quiet_tracker.complete_phase(PHASE)
    assert read_phase(state_file)["summary"] == {"fixed": 1}


def test_step_reporter_writes_once_per_step(
    quiet_tracker: SetupTracker, state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reporter = StepReporter(quiet_tracker, PHASE, ["a", "b", "c"])
    writes = count_writes(monkeypatch)
    reporter.start_phase()
    for number in (1, 2, 3):
        with reporter.step(number):
            pass
    quiet_tracker.complete_phase(PHASE)
    phase_doc = read_phase(state_file)
    # The phase start with step a, the starts of b and c, the phase end.
    assert len(writes) == 4
    assert phase_doc["steps_completed"] == ["a", "b", "c"]
    assert [entry["step"] for entry in phase_doc["step_timings"]] == ["a", "b", "c"]


def test_heartbeat_skipped_after_recent_write(
    state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = SetupTracker(state_file)
    tracker.resume_setup()
    writes = count_writes(monkeypatch)
    calls = 0
    deadline = time.monotonic() + HEARTBEAT_INTERVAL * 1.3
    while time.monotonic() < deadline:
        tracker.set_phase_info(PHASE, "counter", calls)
        calls += 1
        time.sleep(HEARTBEAT_INTERVAL / 8)
    tracker.close()
    # Each of these writes refreshed the heartbeat, so none of its own was due.
    assert len(writes) == calls


def test_load_state_shows_held_back_changes(
    quiet_tracker: SetupTracker, state_file: Path
) -> None:
    quiet_tracker.complete_phase(PHASE, defer=True)
    assert read_phase(state_file)["status"] == "running"
    document = quiet_tracker.load_setup_state()
    assert document["phases"][PHASE.value]["status"] == "completed"


def test_deferred_phase_end_joins_setup_end(
    quiet_tracker: SetupTracker, state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = count_writes(monkeypatch)
    quiet_tracker.complete_phase(PHASE, defer=True)
    quiet_tracker.finish_setup("completed")
    document = json.loads(state_file.read_text())
    assert len(writes) == 1
    assert document["phases"][PHASE.value]["status"] == "completed"
    assert document["overall_status"] == "completed"


def test_deferred_completion_kept_after_failed_write(
    quiet_tracker: SetupTracker, state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet_tracker.begin_step(PHASE, "a")
    quiet_tracker.complete_step(PHASE, "a", defer=True)
    real_replace = StateStore._replace_file

    def full_disk(self: StateStore, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StateStore, "_replace_file", full_disk)
    with pytest.raises(StateFileError):
        quiet_tracker.begin_step(PHASE, "b")
    monkeypatch.setattr(StateStore, "_replace_file", real_replace)
    quiet_tracker.begin_step(PHASE, "b")
    assert read_phase(state_file)["steps_completed"] == ["a"]


def test_deferred_info_rejects_non_json_value(quiet_tracker: SetupTracker) -> None:
    with pytest.raises(TypeError, match="not valid JSON"):
        quiet_tracker.set_phase_info(PHASE, "where", Path("/"), defer=True)
