"""setup_orchestrator.py end to end against the reference middleware."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest
from orchestration import (
    child_env,
    orchestrator_command,
    published_snapshot,
    read_state,
    run_setup,
    tree_snapshot,
)

from codemate_setup.middleware import FaultConfig


def assert_consistent(document: dict) -> None:
    status = document["overall_status"]
    assert (document["overall_progress"] == 100) == (status == "completed")
    if status == "completed":
        assert document["error_details"] is None
    else:
        assert document["error_details"]


@pytest.mark.slow
def test_fresh_setup_installs_and_verifies(
    tmp_path: Path, middleware, example_releases
):
    home = tmp_path / "home"
    result = run_setup("2.9.0", middleware.url, home)
    assert result.returncode == 0, result.stderr
    document = read_state(home)
    assert document["overall_status"] == "completed"
    assert document["phases"]["codebase_update"]["status"] == "completed"
    assert document["phases"]["environment_verification"]["status"] == "completed"
    assert_consistent(document)
    assert (home / "version.txt").read_text().strip() == "2.9.0"
    assert tree_snapshot(home / "app") == published_snapshot(example_releases, "2.9.0")
    assert list((home / "logs").glob("setup-*.log"))
    assert "[100%] setup completed" in result.stderr


@pytest.mark.slow
def test_update_setup_moves_to_new_version(
    tmp_path: Path, middleware, example_releases
):
    home = tmp_path / "home"
    assert run_setup("2.9.0", middleware.url, home).returncode == 0
    result = run_setup("3.0.0", middleware.url, home)
    assert result.returncode == 0, result.stderr
    document = read_state(home)
    assert document["overall_status"] == "completed"
    assert document["target_version"] == "3.0.0"
    assert tree_snapshot(home / "app") == published_snapshot(example_releases, "3.0.0")


@pytest.mark.slow
def test_failed_update_still_verifies(tmp_path: Path, middleware, example_releases):
    home = tmp_path / "home"
    assert (
        run_setup("2.9.0", middleware.url, home, "--skip-verification").returncode == 0
    )
    middleware.set_faults(FaultConfig(corrupt_bytes=True))
    result = run_setup("3.0.0", middleware.url, home)
    document = read_state(home)
    assert result.returncode == 1
    assert document["overall_status"] == "failed"
    assert document["phases"]["codebase_update"]["status"] == "failed"
    assert document["phases"]["environment_verification"]["status"] == "completed"
    assert document["error_details"].startswith("codebase_update: ")
    assert_consistent(document)
    assert (home / "version.txt").read_text().strip() == "2.9.0"
    assert tree_snapshot(home / "app") == published_snapshot(example_releases, "2.9.0")


@pytest.mark.slow
def test_failed_update_without_install_skips_verification(tmp_path: Path, middleware):
    home = tmp_path / "home"
    middleware.set_faults(FaultConfig(corrupt_bytes=True))
    result = run_setup("3.0.0", middleware.url, home)
    document = read_state(home)
    assert result.returncode == 1
    assert document["phases"]["environment_verification"]["status"] == "skipped"
    assert not (home / "version.txt").exists()
    assert_consistent(document)


def test_failed_setup_prints_error_on_stderr(tmp_path: Path, middleware):
    home = tmp_path / "home"
    middleware.set_faults(FaultConfig(corrupt_bytes=True))

    result = run_setup("3.0.0", middleware.url, home)

    assert "error: " in result.stderr
    assert "error: " not in result.stdout


@pytest.mark.slow
def test_failed_verification_fails_setup(tmp_path: Path, middleware):
    home = tmp_path / "home"
    assert (
        run_setup("2.9.0", middleware.url, home, "--skip-verification").returncode == 0
    )
    # A requirement that no index offers: the verification cannot repair it.
    (home / "requirements.txt").write_text("cm-package-that-does-not-exist==1.0\n")
    wheels = tmp_path / "empty-wheelhouse"
    wheels.mkdir()
    result = run_setup(
        None,
        middleware.url,
        home,
        "--skip-update",
        "--find-links",
        str(wheels),
        "--index-url",
        "http://127.0.0.1:9/simple",
    )
    document = read_state(home)
    assert result.returncode == 1
    assert document["phases"]["codebase_update"]["status"] == "skipped"
    assert document["phases"]["environment_verification"]["status"] == "failed"
    assert document["error_details"].startswith("environment_verification: ")
    assert_consistent(document)


def test_skip_both_phases_is_usage_error(tmp_path: Path, middleware):
    result = run_setup(
        "3.0.0",
        middleware.url,
        tmp_path / "home",
        "--skip-update",
        "--skip-verification",
    )
    assert result.returncode == 2
    assert "leave nothing to do" in result.stderr


@pytest.mark.parametrize("version", ["../../etc", "", "3.0.0; rm -rf"])
def test_invalid_version_exits_two(tmp_path: Path, version: str):
    home = tmp_path / "home"
    result = run_setup(version or "''", "http://127.0.0.1:9", home)
    assert result.returncode == 2
    assert "invalid version" in result.stderr
    assert not (home / "setup_state.json").exists()


def test_skip_update_reason_names_flag(tmp_path: Path, middleware):
    home = tmp_path / "home"
    result = run_setup(None, middleware.url, home, "--skip-update")
    update = read_state(home)["phases"]["codebase_update"]
    assert result.returncode == 0, result.stderr
    assert update["skip_reason"] == "--skip-update was given"
    assert update["current_step"] == "Skipped: --skip-update was given"


@pytest.mark.slow
def test_skip_update_verifies_existing_install(tmp_path: Path, middleware):
    home = tmp_path / "home"
    assert (
        run_setup("3.0.0", middleware.url, home, "--skip-verification").returncode == 0
    )
    result = run_setup(None, middleware.url, home, "--skip-update")
    document = read_state(home)
    assert result.returncode == 0, result.stderr
    assert document["phases"]["codebase_update"]["status"] == "skipped"
    assert document["phases"]["environment_verification"]["status"] == "completed"
    assert document["overall_progress"] == 100


@pytest.mark.slow
def test_isolated_phases_complete(tmp_path: Path, middleware, example_releases):
    home = tmp_path / "home"
    result = run_setup("3.0.0", middleware.url, home, "--isolated")
    assert result.returncode == 0, result.stderr
    document = read_state(home)
    assert document["overall_status"] == "completed"
    assert document["phases"]["codebase_update"]["status"] == "completed"
    assert document["phases"]["environment_verification"]["status"] == "completed"
    assert tree_snapshot(home / "app") == published_snapshot(example_releases, "3.0.0")


@pytest.mark.slow
def test_isolated_failed_update_reported(tmp_path: Path, middleware):
    home = tmp_path / "home"
    middleware.set_faults(FaultConfig(corrupt_bytes=True))
    result = run_setup("3.0.0", middleware.url, home, "--isolated")
    document = read_state(home)
    assert result.returncode == 1
    assert document["phases"]["codebase_update"]["status"] == "failed"
    assert document["error_details"].startswith("codebase_update: ")


def test_json_output_names_outcome(tmp_path: Path, middleware):
    import json

    home = tmp_path / "home"
    result = run_setup("3.0.0", middleware.url, home, "--skip-verification", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "completed"
    assert document["phases"]["environment_verification"] == "skipped"


def test_invalid_middleware_url_exits_two(tmp_path: Path):
    home = tmp_path / "home"
    result = run_setup("3.0.0", "ftp://127.0.0.1:9/", home)
    assert result.returncode == 2
    assert "invalid middleware URL 'ftp://127.0.0.1:9'" in result.stderr
    assert not (home / "setup_state.json").exists()


def test_unknown_release_exits_two(tmp_path: Path, middleware):
    home = tmp_path / "home"
    result = run_setup("9.9.9", middleware.url, home, "--skip-verification")
    document = read_state(home)
    assert result.returncode == 2
    assert document["overall_status"] == "failed"
    assert "9.9.9" in document["error_details"]


@pytest.mark.parametrize("flag", ["--status", "--wait"])
def test_reader_flag_with_version_exits_two(tmp_path: Path, flag: str):
    import subprocess

    from orchestration import child_env, orchestrator_command

    result = subprocess.run(
        orchestrator_command(flag, "3.0.0", "--home", str(tmp_path / "home")),
        capture_output=True,
        text=True,
        env=child_env(),
    )
    assert result.returncode == 2
    assert f"{flag} reads the current setup and takes no VERSION" in result.stderr


def update_child(orchestrator: subprocess.Popen, timeout: float = 60):
    """Return the update.py child of an isolated setup once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(orchestrator.pid).children():
            if any(part.endswith("update.py") for part in child.cmdline()):
                return child
        time.sleep(0.05)
    raise AssertionError("the orchestrator started no update.py child")


@pytest.mark.slow
def test_isolated_child_stops_when_orchestrator_killed(
    tmp_path: Path, middleware, example_releases
):
    home = tmp_path / "home"
    assert (
        run_setup("2.9.0", middleware.url, home, "--skip-verification").returncode == 0
    )
    # Slow enough that the update would run for minutes on its own.
    middleware.set_faults(FaultConfig(bytes_per_second=20))
    orchestrator = subprocess.Popen(
        orchestrator_command(
            "3.0.0",
            "--middleware-url",
            middleware.url,
            "--home",
            str(home),
            "--yes",
            "--isolated",
            "--skip-verification",
        ),
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    child = update_child(orchestrator)
    time.sleep(1.0)

    orchestrator.kill()
    orchestrator.wait()
    child.wait(timeout=20)
    middleware.set_faults(FaultConfig())
    document = read_state(home)
    snapshot = tree_snapshot(home / "app")
    again = run_setup("3.0.0", middleware.url, home, "--skip-verification")

    assert document["phases"]["codebase_update"]["status"] == "failed"
    assert "cancelled" in document["phases"]["codebase_update"]["error"]
    assert snapshot == published_snapshot(example_releases, "2.9.0")
    assert again.returncode == 0, again.stderr
