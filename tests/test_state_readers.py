"""Real readers of the state file (jq, Node.js) while a writer runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WRITER = Path(__file__).resolve().parent / "state_writer.py"
READS = 2000

NODE_POLLER = textwrap.dedent(
    """
    const fs = require("fs");
    const path = process.argv[2];
    const reads = Number(process.argv[3]);
    let failures = 0, last = -1, decreases = 0;
    for (let i = 0; i < reads; i++) {
      try {
        const doc = JSON.parse(fs.readFileSync(path, "utf8"));
        const progress = doc.phases.codebase_update.progress;
        if (progress < last) decreases++;
        last = progress;
      } catch (e) {
        failures++;
        console.error(String(e));
      }
    }
    console.log(JSON.stringify({failures, decreases}));
    """
)


def start_writer(state: Path) -> subprocess.Popen:
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), "forever", str(state)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    deadline = time.monotonic() + 30
    while not state.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return writer


def stop_writer(writer: subprocess.Popen) -> None:
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_jq_reads_parse_during_writes(tmp_path: Path) -> None:
    state = tmp_path / "setup_state.json"
    writer = start_writer(state)
    # One jq process reads the file once per argument, opening it anew each time,
    # so a batch of arguments is a batch of independent reads.
    batch = [str(state)] * 100
    try:
        values: list[int] = []
        for _ in range(READS // len(batch)):
            result = subprocess.run(
                ["jq", "-e", ".phases.codebase_update.progress", *batch],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, result.stderr
            values.extend(int(line) for line in result.stdout.split())
        assert writer.poll() is None, "the writer stopped before the readers finished"
    finally:
        stop_writer(writer)
    assert len(values) == READS
    assert all(
        later >= earlier for earlier, later in zip(values, values[1:], strict=False)
    )


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_reads_parse_during_writes(tmp_path: Path) -> None:
    state = tmp_path / "setup_state.json"
    poller = tmp_path / "poll.js"
    poller.write_text(NODE_POLLER)
    writer = start_writer(state)
    try:
        result = subprocess.run(
            ["node", str(poller), str(state), str(READS)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert writer.poll() is None, "the writer stopped before the reader finished"
    finally:
        stop_writer(writer)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '{"failures":0,"decreases":0}'
