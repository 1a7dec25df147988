"""--resume, downgrades and the hints of setup_orchestrator.py, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from orchestration import read_state, run_setup

from codemate_setup.middleware import FaultConfig


def install(version: str, url: str, home: Path) -> None:
    """Install ``version`` into ``home`` without a verification."""
    result = run_setup(version, url, home, "--skip-verification")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_resume_without_version_reruns_skipped_verification(tmp_path: Path, middleware):
    home = tmp_path / "home"
    middleware.set_faults(FaultConfig(corrupt_bytes=True))
    assert run_setup("3.0.0", middleware.url, home).returncode == 1
    middleware.set_faults(FaultConfig())

    result = run_setup(None, middleware.url, home, "--resume")

    document = read_state(home)
    assert result.returncode == 0, result.stderr
    assert document["overall_status"] == "completed"
    assert document["phases"]["environment_verification"]["status"] == "completed"
    assert (home / "version.txt").read_text().strip() == "3.0.0"
    assert (home / "environment").is_dir()


def test_resume_without_version_or_setup_exits_two(tmp_path: Path, middleware):
    home = tmp_path / "home"

    result = run_setup(None, middleware.url, home, "--resume")

    assert result.returncode == 2
    assert "no interrupted setup to resume" in result.stderr
    assert not (home / "setup_state.json").exists()


def test_downgrade_refused_without_backup_advice(tmp_path: Path, middleware):
    home = tmp_path / "home"
    assert (
        run_setup("3.0.0", middleware.url, home, "--skip-verification").returncode == 0
    )

    result = run_setup("2.9.0", middleware.url, home, "--skip-verification")

    assert result.returncode == 2
    assert "--allow-downgrade" in result.stderr
    # No backup leads back to 2.9.0, which was never installed here.
    assert "--rollback" not in result.stderr


def test_downgrade_refused_with_backup_advice(tmp_path: Path, middleware):
    home = tmp_path / "home"
    assert (
        run_setup("2.9.0", middleware.url, home, "--skip-verification").returncode == 0
    )
    assert (
        run_setup("3.0.0", middleware.url, home, "--skip-verification").returncode == 0
    )

    result = run_setup("2.9.0", middleware.url, home, "--skip-verification")

    assert result.returncode == 2
    assert "--rollback 2.9.0" in result.stderr


def test_orchestrator_allow_downgrade_installs_older(tmp_path: Path, middleware):
    home = tmp_path / "home"
    assert (
        run_setup("3.0.0", middleware.url, home, "--skip-verification").returncode == 0
    )

    result = run_setup(
        "2.9.0", middleware.url, home, "--skip-verification", "--allow-downgrade"
    )

    assert result.returncode == 0, result.stderr
    assert (home / "version.txt").read_text().strip() == "2.9.0"


def test_isolated_allow_downgrade_installs_older(tmp_path: Path, middleware):
    home = tmp_path / "home"
    assert (
        run_setup("3.0.0", middleware.url, home, "--skip-verification").returncode == 0
    )

    result = run_setup(
        "2.9.0",
        middleware.url,
        home,
        "--skip-verification",
        "--allow-downgrade",
        "--isolated",
    )

    assert result.returncode == 0, result.stderr
    assert (home / "version.txt").read_text().strip() == "2.9.0"


def test_short_version_recorded_as_released(tmp_path: Path, middleware):
    home = tmp_path / "home"

    result = run_setup("3.0", middleware.url, home, "--skip-verification")

    assert result.returncode == 0, result.stderr
    assert (home / "version.txt").read_text().strip() == "3.0.0"
