"""The state file under real concurrent writer, reader and killed processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codemate_setup.state import Phase, SetupTracker
from codemate_setup.state.schema import shape_problem

ROOT = Path(__file__).resolve().parent.parent
WRITER = Path(__file__).resolve().parent / "state_writer.py"


def spawn(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(WRITER), *args], env=env)


def temp_files(folder: Path) -> list[Path]:
    return list(folder.glob(".setup_state.json.*.tmp"))


@pytest.mark.slow
def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    state = tmp_path / "setup_state.json"
    owner = SetupTracker(state)
    owner.start_setup("3.0.0")
    owner.start_phase(Phase.CODEBASE_UPDATE, 1000)
    stop = tmp_path / "stop"

    readers = [
        spawn("read", str(state), str(stop), str(tmp_path / f"reader{n}.json"))
        for n in range(2)
    ]
    writers = [spawn("steps", str(state), str(n), "250") for n in range(4)]
    for writer in writers:
        assert writer.wait(timeout=240) == 0
    stop.touch()
    for reader in readers:
        assert reader.wait(timeout=60) == 0
    owner.close()

    steps = json.loads(state.read_text())["phases"]["codebase_update"][
        "steps_completed"
    ]
    expected = {f"writer {w} step {n}" for w in range(4) for n in range(250)}
    assert len(steps) == 1000
    assert set(steps) == expected
    for n in range(2):
        seen = json.loads((tmp_path / f"reader{n}.json").read_text())
        assert seen["reads"] > 0
        assert seen["failures"] == []
        assert seen["decreases"] == []


@pytest.mark.slow
def test_sigkilled_writer_leaves_valid_state(tmp_path: Path) -> None:
    state = tmp_path / "setup_state.json"
    state.with_suffix(".lock").write_bytes(b"")
    rng = random.Random(20261204)

    for _round in range(8):
        writer = spawn("forever", str(state))
        # On a loaded machine the first writer may take a while to start.
        deadline = time.monotonic() + 30
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.15 + rng.random() * 0.35)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)

        document = json.loads(state.read_text())
        assert shape_problem(document) is None
        # A killed writer may leave at most the temp file it was writing.
        assert len(temp_files(tmp_path)) <= 1

        lock_probe = spawn("lock", str(state))
        assert lock_probe.wait(timeout=30) == 0
        assert temp_files(tmp_path) == []


def test_zero_byte_lock_file_does_not_block(tmp_path: Path) -> None:
    state = tmp_path / "setup_state.json"
    state.with_suffix(".lock").write_bytes(b"")
    tracker = SetupTracker(state, lock_timeout=0.2)
    tracker.start_setup()
    tracker.close()
    assert json.loads(state.read_text())["overall_status"] == "running"
