"""Corrupt, missing and unwritable state files: recovery without data loss."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codemate_setup.errors import StateFileError
from codemate_setup.state import Phase, SetupTracker

ROOT = Path(__file__).resolve().parent.parent

CORRUPT_CONTENTS = {
    "truncated": b'{"setup_id": "setup_1", "overall_status": "runn',
    "empty": b"",
    "not_json": b"<html>not json</html>",
    "json_list": b"[1, 2, 3]",
    "missing_phases": json.dumps(
        {"setup_id": "s", "overall_status": "running"}
    ).encode(),
    "binary": b"\x00\xff\xfe\x00",
}


def aside_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("setup_state.json.corrupt-*"))


@pytest.mark.parametrize("kind", list(CORRUPT_CONTENTS), ids=list(CORRUPT_CONTENTS))
def test_corrupt_state_moved_aside(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "setup_state.json"
    state.write_bytes(CORRUPT_CONTENTS[kind])
    tracker = SetupTracker(state)
    tracker.start_setup("3.0.0")
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.close()

    moved = aside_files(tmp_path)
    assert len(moved) == 1
    assert moved[0].read_bytes() == CORRUPT_CONTENTS[kind]
    assert json.loads(state.read_text())["phases"]["codebase_update"]["status"] == (
        "running"
    )
    assert "moved it to" in caplog.text


def test_corrupted_midsetup_continues_same_setup(tmp_path: Path) -> None:
    state = tmp_path / "setup_state.json"
    tracker = SetupTracker(state)
    setup_id = tracker.start_setup("3.0.0")
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.complete_step(Phase.CODEBASE_UPDATE, "one")
    state.write_bytes(b"{garbage")
    tracker.complete_step(Phase.CODEBASE_UPDATE, "two")
    tracker.close()

    document = json.loads(state.read_text())
    assert document["setup_id"] == setup_id
    assert document["phases"]["codebase_update"]["steps_completed"] == ["one", "two"]


def test_reader_reports_corrupt_file(tmp_path: Path) -> None:
    state = tmp_path / "setup_state.json"
    state.write_bytes(b"{")
    tracker = SetupTracker(state)
    with pytest.raises(StateFileError, match="is not valid JSON"):
        tracker.load_setup_state()
    assert state.read_bytes() == b"{"


@pytest.mark.parametrize("kind", ["truncated", "empty", "json_list"])
def test_cli_corrupt_file_no_traceback(tmp_path: Path, kind: str) -> None:
    state = tmp_path / "setup_state.json"
    state.write_bytes(CORRUPT_CONTENTS[kind])
    result = subprocess.run(
        [sys.executable, str(ROOT / "setup_tracker.py"), "--state-file", str(state)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: the state file")
    assert "Traceback" not in result.stderr
    assert state.read_bytes() == CORRUPT_CONTENTS[kind]


def test_state_folder_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("not a folder")
    with pytest.raises(StateFileError, match="cannot create the state folder"):
        SetupTracker(blocker / "setup_state.json")
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores folder permissions",
)
def test_unwritable_folder_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    try:
        tracker = SetupTracker(home / "setup_state.json")
        with pytest.raises(StateFileError, match="writable"):
            tracker.start_setup()
    finally:
        home.chmod(0o700)


def test_full_disk_keeps_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "setup_state.json"
    tracker = SetupTracker(state)
    tracker.start_setup("3.0.0")
    before = state.read_bytes()

    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # A full disk fails the flush of the temp file; os.fsync raises ENOSPC then.
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StateFileError, match="check free disk space"):
        tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    monkeypatch.setattr(os, "fsync", real_fsync)
    tracker.close()

    assert state.read_bytes() == before
    assert list(tmp_path.glob(".setup_state.json.*.tmp")) == []


def test_busy_lock_skips_progress_write(tmp_path: Path) -> None:
    import filelock

    state = tmp_path / "setup_state.json"
    tracker = SetupTracker(state, lock_timeout=0.1)
    tracker.start_setup()
    tracker.start_phase(Phase.CODEBASE_UPDATE, 10)
    tracker.close()
    before = state.read_bytes()

    holder = filelock.FileLock(str(state.with_suffix(".lock")), thread_local=False)
    result: list[object] = []

    import threading

    def hold() -> None:
        with holder:
            result.append("held")
            done.wait(5)

    done = threading.Event()
    thread = threading.Thread(target=hold)
    thread.start()
    while not result:
        pass
    try:
        tracker.set_step_progress(Phase.CODEBASE_UPDATE, 0.5)
        tracker.flush()
        assert state.read_bytes() == before
    finally:
        done.set()
        thread.join()
    tracker.flush()
    assert json.loads(state.read_text())["phases"]["codebase_update"]["progress"] == 5
