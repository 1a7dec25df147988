"""The orchestrator as a process: kill -9, resume, signals, one setup per home,
and real readers of the state file during a whole setup."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from orchestration import (
    EXAMPLES_DIR,
    child_env,
    orchestrator_command,
    published_snapshot,
    read_state,
    run_setup,
    tree_snapshot,
)

from codemate_setup.middleware import FaultConfig
from codemate_setup.publish import publish_release

BIG_FILE_BYTES = 4 * 1024 * 1024
SLOW_RATE = 512 * 1024

PHASE_ORDER = {"pending": 0, "running": 1, "completed": 2, "failed": 2, "skipped": 2}
OVERALL_ORDER = {
    "pending": 0,
    "running": 1,
    "completed": 2,
    "failed": 2,
    "cancelled": 2,
}


@pytest.fixture
def big_releases(tmp_path: Path) -> Path:
    """2.9.0 as bundled, and 3.0.0 with a 4 MiB asset that takes seconds to serve."""
    source = tmp_path / "src-3.0.0"
    shutil.copytree(EXAMPLES_DIR / "3.0.0", source)
    (source / "assets" / "model.bin").write_bytes(
        bytes(range(256)) * (BIG_FILE_BYTES // 256)
    )
    releases = tmp_path / "releases"
    publish_release(EXAMPLES_DIR / "2.9.0", "2.9.0", releases, durable=False)
    publish_release(source, "3.0.0", releases, durable=False)
    return releases


def start_setup(version: str, url: str, home: Path, *extra: str) -> subprocess.Popen:
    args = [version, "--middleware-url", url, "--home", str(home), "--yes", *extra]
    return subprocess.Popen(
        orchestrator_command(*args),
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_state(home: Path, condition, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            document = read_state(home)
        except (FileNotFoundError, ValueError):
            document = None
        if document is not None and condition(document):
            return document
        time.sleep(0.05)
    raise AssertionError(f"the state never reached the condition within {timeout} s")


def downloading(document: dict, min_bytes: int = 1) -> bool:
    phase = document["phases"]["codebase_update"]
    detail = phase.get("detail") or {}
    return phase["current_step"] == "Downloading application files" and (
        detail.get("bytes_done", 0) >= min_bytes
    )


def status_output(home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        orchestrator_command("--status", "--home", str(home)),
        capture_output=True,
        text=True,
        env=child_env(),
    )


@pytest.mark.slow
def test_kill_during_update_then_resume(tmp_path, big_releases, start_middleware):
    server = start_middleware(
        big_releases, faults=FaultConfig(bytes_per_second=SLOW_RATE)
    )
    home = tmp_path / "home"
    assert run_setup("2.9.0", server.url, home, "--skip-verification").returncode == 0

    setup = start_setup("3.0.0", server.url, home)
    wait_for_state(home, lambda doc: downloading(doc, min_bytes=BIG_FILE_BYTES // 2))
    setup.send_signal(signal.SIGKILL)
    setup.wait(timeout=30)

    status = status_output(home)
    assert status.returncode == 0
    assert ": interrupted," in status.stdout
    assert (home / "version.txt").read_text().strip() == "2.9.0"
    assert tree_snapshot(home / "app") == published_snapshot(big_releases, "2.9.0")

    server.set_faults(FaultConfig())
    sent_before = sum(record.bytes_sent for record in server.requests)
    result = run_setup("3.0.0", server.url, home, "--resume")
    assert result.returncode == 0, result.stderr
    document = read_state(home)
    assert document["overall_status"] == "completed"
    assert document.get("resumed_at")
    assert tree_snapshot(home / "app") == published_snapshot(big_releases, "3.0.0")
    sent_after = sum(record.bytes_sent for record in server.requests) - sent_before
    # The bytes received before the kill were kept and resumed, not fetched again.
    assert sent_after < BIG_FILE_BYTES


@pytest.mark.slow
def test_kill_during_verification_then_resume(tmp_path, middleware, example_releases):
    home = tmp_path / "home"
    setup = start_setup("3.0.0", middleware.url, home)
    wait_for_state(
        home,
        lambda doc: doc["phases"]["environment_verification"]["status"] == "running",
    )
    setup.send_signal(signal.SIGKILL)
    setup.wait(timeout=30)
    assert ": interrupted," in status_output(home).stdout

    result = run_setup("3.0.0", middleware.url, home, "--resume")
    assert result.returncode == 0, result.stderr
    document = read_state(home)
    assert document["overall_status"] == "completed"
    # The update completed before the kill, so the resumed setup did not run it again.
    timings = document["phases"]["codebase_update"]["step_timings"]
    assert document["phases"]["codebase_update"]["status"] == "completed"
    assert all(entry["ended_at"] < document["resumed_at"][0] for entry in timings)
    assert tree_snapshot(home / "app") == published_snapshot(example_releases, "3.0.0")


@pytest.mark.slow
def test_sigterm_cancels_and_keeps_old_version(
    tmp_path, big_releases, start_middleware
):
    server = start_middleware(
        big_releases, faults=FaultConfig(bytes_per_second=SLOW_RATE)
    )
    home = tmp_path / "home"
    assert run_setup("2.9.0", server.url, home, "--skip-verification").returncode == 0

    setup = start_setup("3.0.0", server.url, home)
    wait_for_state(home, downloading)
    setup.send_signal(signal.SIGTERM)
    _out, err = setup.communicate(timeout=60)

    document = read_state(home)
    assert setup.returncode == 130, err
    assert document["overall_status"] == "cancelled"
    assert "cancelled" in document["error_details"]
    assert (home / "version.txt").read_text().strip() == "2.9.0"
    assert tree_snapshot(home / "app") == published_snapshot(big_releases, "2.9.0")
    # The locks were released: a new setup starts at once.
    server.set_faults(FaultConfig())
    assert run_setup("3.0.0", server.url, home, "--skip-verification").returncode == 0


@pytest.mark.slow
def test_second_setup_same_home_exits_three(tmp_path, big_releases, start_middleware):
    server = start_middleware(
        big_releases, faults=FaultConfig(bytes_per_second=SLOW_RATE)
    )
    home = tmp_path / "home"
    first = start_setup("3.0.0", server.url, home, "--skip-verification")
    document = wait_for_state(home, downloading)
    try:
        second = run_setup("3.0.0", server.url, home)
        assert second.returncode == 3
        assert f"pid {document['pid']}" in second.stderr
        assert "codebase_update" not in second.stderr
        assert read_state(home)["setup_id"] == document["setup_id"]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)


@pytest.mark.slow
def test_setups_in_two_homes_run_in_parallel(tmp_path, middleware, example_releases):
    homes = [tmp_path / "home-a", tmp_path / "home-b"]
    setups = [
        start_setup("3.0.0", middleware.url, home, "--skip-verification")
        for home in homes
    ]
    for setup in setups:
        setup.communicate(timeout=300)
        assert setup.returncode == 0
    for home in homes:
        assert read_state(home)["overall_status"] == "completed"


@pytest.mark.slow
def test_wait_reports_outcome(tmp_path, big_releases, start_middleware):
    server = start_middleware(
        big_releases, faults=FaultConfig(bytes_per_second=4 * SLOW_RATE)
    )
    home = tmp_path / "home"
    setup = start_setup("3.0.0", server.url, home, "--skip-verification")
    wait_for_state(home, lambda doc: doc["overall_status"] == "running")
    waited = subprocess.run(
        orchestrator_command("--wait", "--home", str(home), "--timeout", "240"),
        capture_output=True,
        text=True,
        env=child_env(),
    )
    setup.communicate(timeout=60)
    assert waited.returncode == 0
    assert "completed" in waited.stdout


@pytest.mark.slow
def test_wait_on_killed_setup_returns(tmp_path, big_releases, start_middleware):
    server = start_middleware(
        big_releases, faults=FaultConfig(bytes_per_second=SLOW_RATE)
    )
    home = tmp_path / "home"
    setup = start_setup("3.0.0", server.url, home, "--skip-verification")
    wait_for_state(home, downloading)
    setup.send_signal(signal.SIGKILL)
    setup.wait(timeout=30)
    waited = subprocess.run(
        orchestrator_command("--wait", "--home", str(home), "--timeout", "60"),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert waited.returncode == 1
    assert "interrupted" in waited.stdout


NODE_POLLER = textwrap.dedent(
    """
    const fs = require("fs");
    const [path, stopPath] = process.argv.slice(2);
    const reads = [];
    let failures = 0;
    const poll = () => {
      try {
        const doc = JSON.parse(fs.readFileSync(path, "utf8"));
        reads.push([doc.overall_status, doc.overall_progress,
                    doc.phases.codebase_update.status,
                    doc.phases.environment_verification.status]);
      } catch (e) {
        if (e.code !== "ENOENT") { failures++; console.error(String(e)); }
      }
      if (fs.existsSync(stopPath)) {
        console.log(JSON.stringify({failures, reads}));
      } else {
        setTimeout(poll, 2);
      }
    };
    poll();
    """
)


JQ_STATUSES = (
    "[.overall_status, .overall_progress, .phases.codebase_update.status, "
    ".phases.environment_verification.status]"
)


def assert_moves_forward(reads: list[list]) -> None:
    for earlier, later in zip(reads, reads[1:], strict=False):
        assert later[1] >= earlier[1], f"overall progress fell: {earlier} -> {later}"
        assert OVERALL_ORDER[later[0]] >= OVERALL_ORDER[earlier[0]], (earlier, later)
        assert PHASE_ORDER[later[2]] >= PHASE_ORDER[earlier[2]], (earlier, later)
        assert PHASE_ORDER[later[3]] >= PHASE_ORDER[earlier[3]], (earlier, later)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("jq") is None,
    reason="needs both Node.js and jq",
)
def test_node_and_jq_follow_whole_setup(tmp_path, big_releases, start_middleware):
    server = start_middleware(
        big_releases, faults=FaultConfig(bytes_per_second=8 * SLOW_RATE)
    )
    home = tmp_path / "home"
    home.mkdir()
    state, stop = home / "setup_state.json", tmp_path / "stop"
    poller = tmp_path / "poll.js"
    poller.write_text(NODE_POLLER)
    node = subprocess.Popen(
        ["node", str(poller), str(state), str(stop)], stdout=subprocess.PIPE, text=True
    )
    setup = start_setup("3.0.0", server.url, home)

    jq_reads: list[list] = []
    jq_failures = 0
    while setup.poll() is None:
        if state.exists():
            result = subprocess.run(
                [
                    "jq",
                    "-c",
                    JQ_STATUSES,
                    str(state),
                ],
                capture_output=True,
                text=True,
            )
            if result.returncode == 0:
                jq_reads.append(json.loads(result.stdout))
            else:
                jq_failures += 1
        time.sleep(0.01)
    stop.touch()
    node_out, _ = node.communicate(timeout=60)
    node_result = json.loads(node_out)

    assert setup.returncode == 0
    assert jq_failures == 0
    assert node_result["failures"] == 0
    assert len(jq_reads) > 10
    assert len(node_result["reads"]) > 100
    assert_moves_forward(jq_reads)
    assert_moves_forward(node_result["reads"])
    assert node_result["reads"][-1] == ["completed", 100, "completed", "completed"]
