"""Tests of verification_env.py as a process, and of the middleware copy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from verify_support import (
    free_port,
    free_service_ports,
    make_home,
    options_for,
    tree_snapshot,
)

from codemate_setup.middleware import MiddlewareHandle
from codemate_setup.publish import publish_release
from codemate_setup.state import SetupTracker
from codemate_setup.verify import CheckStatus, run_verification

SCRIPT = Path(__file__).resolve().parent.parent / "verification_env.py"

# The wheelhouse and shared_env fixtures, shared by every module that uses them.
pytest_plugins = ["verify_fixtures"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **free_port_variables()}
    environ.pop("CODEMATE_SETUP_ID", None)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
    )


def free_port_variables() -> dict[str, str]:
    return {name: str(port) for name, port in free_service_ports().items()}


def check_by_id(document: dict, check_id: str) -> dict:
    return next(c for c in document["checks"] if c["check"] == check_id)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--installer", "conda"], {}, "invalid choice: 'conda'"),
        (
            ["--min-free-disk-mb", "lots"],
            {},
            "error: invalid --min-free-disk-mb 'lots': expected a whole number of MiB",
        ),
        (
            [],
            {"QDRANT_PORT": "99999"},
            "error: invalid QDRANT_PORT '99999': expected a port number from 1 to "
            "65535",
        ),
        (
            ["--python", "/nonexistent/python3"],
            {},
            "error: invalid --python /nonexistent/python3: the file does not exist",
        ),
        (
            ["--check-only", "--middleware-url", "ftp://example.invalid"],
            {},
            "error: invalid middleware URL 'ftp://example.invalid'",
        ),
        (
            ["--check-only", "--middleware-url", "http://example.invalid"],
            {},
            "error: the middleware URL must use https for a host that is not on "
            "loopback",
        ),
    ],
    ids=["installer", "threshold", "port-variable", "python", "url", "insecure-url"],
)
def test_invalid_usage_exits_2(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    home = tmp_path / "home"

    result = run_cli("--home", str(home), *args, env=env)

    assert result.returncode == 2
    assert message in result.stderr
    assert not home.exists()


def link_environment(home: Path, env_dir: Path) -> None:
    (home / "environment").symlink_to(env_dir, target_is_directory=True)


@pytest.mark.slow
def test_missing_requirements_middleware_down(tmp_path: Path, shared_env: Path) -> None:
    home = make_home(tmp_path, requirements=None)
    link_environment(home, shared_env)
    port = free_port()

    result = run_cli(
        "--home", str(home), "--middleware-url", f"http://127.0.0.1:{port}", "--json"
    )

    assert result.returncode == 1
    document = json.loads(result.stdout)
    requirements = check_by_id(document, "requirements")
    assert requirements["status"] == "fail"
    assert requirements["value"] == (
        f"{home / 'requirements.txt'} not found, and the middleware's copy for "
        f"version 3.0.0 could not be fetched: cannot reach the middleware at "
        f"http://127.0.0.1:{port}/: connection refused"
    )
    assert requirements["action"].startswith("start the middleware")
    assert not (home / "requirements.txt").exists()

    state = json.loads((home / "setup_state.json").read_text())
    assert state["overall_status"] == "failed"
    assert state["error_details"].startswith(
        "environment_verification: 1 critical issue remains, first requirements: "
    )


@pytest.mark.slow
def test_requirements_fetched_from_middleware(
    tmp_path: Path,
    shared_env: Path,
    wheelhouse: Path,
    start_middleware: Callable[..., MiddlewareHandle],
) -> None:
    source = tmp_path / "release-src"
    source.mkdir()
    (source / "initiate.py").write_text("print('CodeMate')\n")
    (source / "requirements.txt").write_text("cm-alpha>=1\n")
    releases = tmp_path / "releases"
    publish_release(source, "3.0.0", releases, durable=False)
    handle = start_middleware(releases)
    home = make_home(tmp_path, requirements=None)
    link_environment(home, shared_env)

    report = run_verification(
        options_for(home, wheelhouse, middleware_url=handle.url),
        tracker=None,
        own_setup=True,
    )

    result = next(c for c in report.checks if c.check == "requirements")
    assert result.status is CheckStatus.FIXED
    assert result.value.startswith(
        "requirements.txt was missing; saved the middleware's"
    )
    assert (home / "requirements.txt").read_text() == "cm-alpha>=1\n"


@pytest.mark.slow
def test_check_only_leaves_every_file_unchanged(
    tmp_path: Path, shared_env: Path
) -> None:
    home = make_home(tmp_path, requirements="cm-alpha==9.9\ncm-beta==1.0\n")
    (home / "app" / "pkg" / "core.py").unlink()
    link_environment(home, shared_env)
    before_home = tree_snapshot(home)
    before_env = tree_snapshot(shared_env)

    result = run_cli("--home", str(home), "--check-only", "--json")

    assert result.returncode == 1
    assert tree_snapshot(home) == before_home
    assert tree_snapshot(shared_env) == before_env
    document = json.loads(result.stdout)
    packages = check_by_id(document, "packages")
    assert packages["status"] == "fail"
    assert "cm-alpha==9.9" in packages["detail"]["to_install"]
    assert check_by_id(document, "files.listing")["status"] == "fail"
    assert document["installer_runs"] == 0


def test_check_only_without_environment_says_repair(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    before = tree_snapshot(home)

    result = run_cli("--home", str(home), "--check-only", "--installer", "pip")

    assert result.returncode == 1
    assert tree_snapshot(home) == before
    assert (
        f"[FAIL]  environment: {home / 'environment'} is missing: no environment "
        "yet; a repair would create it with python -m venv"
    ) in result.stdout
    assert result.stdout.strip().endswith("critical")


def test_report_into_running_setup(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    tracker = SetupTracker(home / "setup_state.json")
    setup_id = tracker.start_setup("3.0.0")
    try:
        result = run_cli(
            "--home",
            str(home),
            "--check-only",
            env={"CODEMATE_SETUP_ID": setup_id},
        )
        state = json.loads((home / "setup_state.json").read_text())
    finally:
        tracker.finish_setup("failed", "test over")
        tracker.close()

    phase = state["phases"]["environment_verification"]
    assert result.returncode == 1
    assert state["setup_id"] == setup_id
    assert state["overall_status"] == "running"
    assert state["phases"]["codebase_update"]["status"] == "pending"
    assert len(phase["steps_completed"]) == 8
    assert phase["status"] == "failed"


def test_unknown_setup_id_is_an_error(tmp_path: Path) -> None:
    home = make_home(tmp_path)

    result = run_cli("--home", str(home), env={"CODEMATE_SETUP_ID": "setup_0_missing"})

    assert result.returncode == 1
    assert "error: setup setup_0_missing is not in the state file" in result.stderr
    assert not (home / "environment").exists()


@pytest.mark.skipif(os.name != "posix", reason="sends SIGTERM to a shell script")
def test_sigterm_during_creation_rolls_back(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    fake_python = tmp_path / "python3"
    fake_python.write_text(
        "#!/bin/sh\n"
        # Like python -m venv running ensurepip: a grandchild that the
        # verification must stop too.
        f'if [ "$1" = "-m" ]; then mkdir -p "$3/bin"; sleep {GRANDCHILD_SECONDS} & '
        "exec sleep 60; fi\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    fake_python.chmod(0o755)
    environ = {**os.environ, **free_port_variables()}
    environ.pop("CODEMATE_SETUP_ID", None)
    child = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--home",
            str(home),
            "--installer",
            "pip",
            "--python",
            str(fake_python),
        ],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (home / "environment" / "bin").exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)

    assert child.returncode == 130
    assert "cancelled" in stderr
    assert not (home / "environment").exists()
    state = json.loads((home / "setup_state.json").read_text())
    assert state["overall_status"] == "cancelled"
    assert grandchildren_left() == []


GRANDCHILD_SECONDS = "97.125"
ORPHAN_SECONDS = "98.375"


def sleepers(seconds: str) -> list[int]:
    import psutil

    return [
        process.info["pid"]
        for process in psutil.process_iter(["pid", "cmdline", "status"])
        if process.info["cmdline"] == ["sleep", seconds]
        and process.info["status"] != psutil.STATUS_ZOMBIE
    ]


@pytest.mark.slow
def test_sigkill_during_creation_stops_tool_on_next_run(
    tmp_path: Path, wheelhouse: Path
) -> None:
    home = make_home(tmp_path)
    hanging_python = tmp_path / "python3"
    hanging_python.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ]; then mkdir -p "$3/bin"; exec sleep {ORPHAN_SECONDS}; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    hanging_python.chmod(0o755)
    environ = {**os.environ, **free_port_variables()}
    environ.pop("CODEMATE_SETUP_ID", None)
    first = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--home",
            str(home),
            "--python",
            str(hanging_python),
        ],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not sleepers(ORPHAN_SECONDS) and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()
    first.wait()
    orphans = sleepers(ORPHAN_SECONDS)

    second = run_cli(
        "--home",
        str(home),
        "--installer",
        "pip",
        "--find-links",
        str(wheelhouse),
        "--no-index",
        "--min-free-disk-mb",
        "0",
        "--min-memory-mb",
        "0",
        "--json",
    )

    assert len(orphans) == 1
    assert second.returncode == 0, second.stderr
    assert sleepers(ORPHAN_SECONDS) == []
    leftover = check_by_id(json.loads(second.stdout), "environment.leftover")
    assert leftover["status"] == "fixed"
    assert leftover["value"] == (
        f"stopped python -m venv (pid {orphans[0]}), left running by a "
        "verification that was killed"
    )
    assert list((home / "children").iterdir()) == []


def grandchildren_left() -> list[int]:
    import psutil

    deadline = time.monotonic() + 5
    while True:
        left = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            if process.info["cmdline"] == ["sleep", GRANDCHILD_SECONDS]:
                left.append(process.info["pid"])
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def test_running_setup_in_home_exits_3(tmp_path: Path) -> None:
    from codemate_setup.config import HomeLayout
    from codemate_setup.setuplock import hold_setup_lock

    home = tmp_path / "home"
    layout = HomeLayout.create(home)
    tracker = SetupTracker(layout.state_file)
    setup_id = tracker.start_setup("3.0.0")
    with hold_setup_lock(layout):
        result = run_cli("--home", str(home))
    tracker.close()

    document = json.loads(layout.state_file.read_text())
    assert result.returncode == 3
    assert f"another setup is running in {home} (pid {os.getpid()})" in result.stderr
    assert document["setup_id"] == setup_id
    assert not (home / "environment").exists()
