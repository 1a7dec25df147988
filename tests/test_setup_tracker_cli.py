"""``python setup_tracker.py``: printing the state, and liveness of a setup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codemate_setup.state import Liveness, OverallStatus, Phase, SetupTracker, assess
from codemate_setup.state.report import format_state

ROOT = Path(__file__).resolve().parent.parent
WRITER = Path(__file__).resolve().parent / "state_writer.py"


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "setup_tracker.py"), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, CODEMATE_HOME=str(home), PYTHONPATH=str(ROOT)),
    )


def test_cli_no_setup_yet(tmp_path: Path) -> None:
    result = run_cli(home=tmp_path / "home")
    assert result.returncode == 0
    assert "No setup has run yet" in result.stdout


def test_cli_prints_phases_readably(tmp_path: Path) -> None:
    tracker = SetupTracker(tmp_path / "setup_state.json")
    tracker.start_setup("3.0.0")
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.complete_step(Phase.CODEBASE_UPDATE, "Initializing installation process")
    tracker.add_warning(Phase.CODEBASE_UPDATE, "only 1.0 GiB free on /")
    result = run_cli(home=tmp_path)
    tracker.close()
    assert result.returncode == 0
    assert "running, 5% overall" in result.stdout
    assert "codebase_update: running 10% (1/10 steps)" in result.stdout
    assert "warning: only 1.0 GiB free on /" in result.stdout


def test_cli_small_download_shown_in_kib(tmp_path: Path) -> None:
    tracker = SetupTracker(tmp_path / "setup_state.json")
    tracker.start_setup("3.0.0")
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.begin_step(Phase.CODEBASE_UPDATE, "Downloading application files")
    tracker.set_step_progress(
        Phase.CODEBASE_UPDATE,
        0.5,
        detail={"bytes_done": 512, "bytes_total": 1024, "bytes_per_second": 256},
    )
    tracker.flush()
    result = run_cli(home=tmp_path)
    tracker.close()
    assert result.returncode == 0
    assert "0.5 of 1.0 KiB at 0.2 KiB/s" in result.stdout


def test_cli_home_is_file_names_fix(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    result = run_cli(home=home)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Not a directory" in result.stderr
    assert "choose another with --home" in result.stderr


def test_cli_json_prints_document(tmp_path: Path) -> None:
    tracker = SetupTracker(tmp_path / "setup_state.json")
    setup_id = tracker.start_setup()
    tracker.finish_setup(OverallStatus.COMPLETED)
    result = run_cli("--json", home=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout)["setup_id"] == setup_id


def test_live_setup_assessed_running(tmp_path: Path) -> None:
    tracker = SetupTracker(tmp_path / "setup_state.json")
    tracker.start_setup()
    document = tracker.load_setup_state()
    tracker.close()
    assert assess(document) is Liveness.RUNNING


def test_killed_setup_reported_interrupted(tmp_path: Path) -> None:
    state = tmp_path / "setup_state.json"
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), "forever", str(state)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    deadline = time.monotonic() + 30
    while not state.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)

    document = json.loads(state.read_text())
    assert document["overall_status"] == "running"
    assert assess(document) is Liveness.INTERRUPTED
    result = run_cli(home=tmp_path)
    assert ": interrupted," in result.stdout
    assert "--resume" in result.stdout


def started_document(home: Path) -> dict:
    """Start a setup from this process, close its tracker, and return the state."""
    tracker = SetupTracker(home / "setup_state.json")
    tracker.start_setup()
    tracker.close()
    return tracker.load_setup_state()


def test_recycled_pid_reported_interrupted(tmp_path: Path) -> None:
    document = started_document(tmp_path)
    # Same pid, but a start time an hour before this process started.
    document["process_start_time"] -= 3600
    assert assess(document) is Liveness.INTERRUPTED


def test_stale_heartbeat_reported_interrupted(tmp_path: Path) -> None:
    document = started_document(tmp_path)
    document["heartbeat"] = "2020-01-01T00:00:00.000000+00:00"
    assert assess(document) is Liveness.INTERRUPTED


def test_report_live_stale_process_hung(tmp_path: Path) -> None:
    document = started_document(tmp_path)
    # This process still runs, but its last heartbeat is years old.
    document["heartbeat"] = "2020-01-01T00:00:00.000000+00:00"

    report = format_state(document)

    assert f"process {os.getpid()} still exists but has not written" in report


def test_report_other_host_process_not_hung(tmp_path: Path) -> None:
    document = started_document(tmp_path)
    # A process on another machine cannot be checked from here.
    document["hostname"] = "another-host.invalid"
    document["heartbeat"] = "2020-01-01T00:00:00.000000+00:00"

    report = format_state(document)

    assert "still exists" not in report


def test_report_dead_process_not_running(tmp_path: Path) -> None:
    document = started_document(tmp_path)
    # Same pid, but a start time an hour before this process started.
    document["process_start_time"] -= 3600

    report = format_state(document)

    assert f"process {os.getpid()} is no longer running" in report


def test_report_resume_hint_names_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CODEMATE_HOME", raising=False)
    document = started_document(tmp_path)
    document["process_start_time"] -= 3600
    document["target_version"] = "3.0.0"

    report = format_state(document, tmp_path)

    assert f"`setup_orchestrator.py 3.0.0 --resume --home {tmp_path}`" in report


def test_report_resume_hint_default_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The home a command finds without --home needs no flag in the hint.
    monkeypatch.setenv("CODEMATE_HOME", str(tmp_path))
    document = started_document(tmp_path)
    document["process_start_time"] -= 3600
    document["target_version"] = "3.0.0"

    report = format_state(document, tmp_path)

    assert "`setup_orchestrator.py 3.0.0 --resume`" in report


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_finished_setup_assessed_finished(tmp_path: Path, status: str) -> None:
    tracker = SetupTracker(tmp_path / "setup_state.json")
    tracker.start_setup()
    tracker.finish_setup(status)
    assert assess(tracker.load_setup_state()) is Liveness.FINISHED


def run_into_closed_pipe(*args: str, home: Path) -> subprocess.CompletedProcess:
    """Run the command with its output going to a pipe whose read end is closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, str(ROOT / "setup_tracker.py"), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, CODEMATE_HOME=str(home), PYTHONPATH=str(ROOT)),
            timeout=60,
        )
    finally:
        os.close(write_end)


def test_cli_closed_output_pipe_prints_no_traceback(tmp_path: Path) -> None:
    tracker = SetupTracker(tmp_path / "setup_state.json")
    tracker.start_setup("2.0.0")
    tracker.close()

    result = run_into_closed_pipe("--json", home=tmp_path)

    assert result.stderr == ""


def test_cli_closed_output_pipe_exits_zero(tmp_path: Path) -> None:
    result = run_into_closed_pipe(home=tmp_path)

    assert result.returncode == 0
