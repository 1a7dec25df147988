"""End-to-end verification runs with real virtual environments and a wheelhouse.

One home goes through a sequence of runs (fresh, unchanged, wrong version,
deleted interpreter); each test checks one outcome of that sequence.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from verify_support import (
    installed_versions,
    make_home,
    options_for,
    pip_install,
    tree_snapshot,
)

from codemate_setup.errors import SetupCancelledError
from codemate_setup.state import SetupTracker
from codemate_setup.verify import (
    STEPS,
    CheckStatus,
    VerificationReport,
    run_verification,
)
from codemate_setup.verify.environment import interpreter_path

# The wheelhouse and shared_env fixtures, shared by every module that uses them.
pytest_plugins = ["verify_fixtures"]
pytestmark = pytest.mark.slow

STEP_NAMES = [name for name, _ in STEPS]


def statuses(report: VerificationReport) -> dict[str, CheckStatus]:
    return {check.check: check.status for check in report.checks}


def check(report: VerificationReport, check_id: str):
    return next(c for c in report.checks if c.check == check_id)


def run(home: Path, wheelhouse: Path, **changes: Any) -> VerificationReport:
    tracker = SetupTracker(home / "setup_state.json")
    try:
        return run_verification(
            options_for(home, wheelhouse, **changes), tracker=tracker, own_setup=True
        )
    finally:
        tracker.close()


def state(home: Path) -> dict[str, Any]:
    return json.loads((home / "setup_state.json").read_text())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> dict:
    """Run the sequence once and keep every report and snapshot."""
    home = make_home(tmp_path_factory.mktemp("scenario"))
    env_dir = home / "environment"
    results: dict[str, Any] = {"home": home, "env_dir": env_dir}

    results["fresh"] = run(home, wheelhouse)
    results["fresh_state"] = state(home)
    results["fresh_versions"] = installed_versions(env_dir)

    before = tree_snapshot(home)
    results["second"] = run(home, wheelhouse)
    results["second_diff"] = _changed(before, tree_snapshot(home))

    pip_install(env_dir, wheelhouse, "cm-alpha==2.0")
    results["wrong_version"] = run(home, wheelhouse)
    results["wrong_version_versions"] = installed_versions(env_dir)

    for python in (env_dir / "bin").glob("python*"):
        python.unlink()
    results["rebuilt"] = run(home, wheelhouse)
    results["rebuilt_versions"] = installed_versions(env_dir)
    results["home_entries"] = sorted(p.name for p in home.iterdir())
    return results


def _changed(before: dict, after: dict) -> list[str]:
    """Return the paths that differ, ignoring the files that record the run."""
    recorded = ("setup_state.json", "setup_state.lock", "logs")
    paths = set(before) | set(after)
    return sorted(
        p for p in paths if before.get(p) != after.get(p) and not p.startswith(recorded)
    )


def test_fresh_home_creates_environment(scenario: dict) -> None:
    result = check(scenario["fresh"], "environment")

    assert result.status is CheckStatus.FIXED
    assert result.value.startswith(f"created {scenario['env_dir']} with python -m venv")
    assert interpreter_path(scenario["env_dir"]).exists()


def test_fresh_home_installs_packages(scenario: dict) -> None:
    result = check(scenario["fresh"], "packages")

    assert result.status is CheckStatus.FIXED
    assert scenario["fresh_versions"]["cm-alpha"] == "1.0"
    assert scenario["fresh_versions"]["cm-beta"] == "1.0"


def test_marker_excluded_requirement_not_installed(scenario: dict) -> None:
    result = check(scenario["fresh"], "packages")

    assert "cm-zeta" not in scenario["fresh_versions"]
    assert "1 not for this interpreter" in result.value


def test_fresh_home_exits_ok(scenario: dict) -> None:
    report = scenario["fresh"]

    assert report.critical == 0
    assert report.exit_code == 0
    assert report.summary_line() == "2 issues found, 2 fixed, 0 critical"


def test_fresh_home_state_file_records_steps(scenario: dict) -> None:
    document = scenario["fresh_state"]
    phase = document["phases"]["environment_verification"]

    assert document["overall_status"] == "completed"
    assert document["overall_progress"] == 100
    assert document["phases"]["codebase_update"]["status"] == "skipped"
    assert phase["status"] == "completed"
    assert phase["steps_total"] == 8
    assert phase["steps_completed"] == STEP_NAMES
    assert phase["summary"] == {
        "issues_found": 2,
        "fixed": 2,
        "warnings": 0,
        "critical": 0,
    }


def test_second_run_calls_no_installer(scenario: dict) -> None:
    report = scenario["second"]

    assert report.installer_runs == 0
    assert report.issues_found == 0


def test_second_run_changes_no_file(scenario: dict) -> None:
    assert scenario["second_diff"] == []


def test_wrong_package_version_is_fixed(scenario: dict) -> None:
    result = check(scenario["wrong_version"], "packages")

    assert result.status is CheckStatus.FIXED
    assert result.value.startswith("installed cm-alpha==1.0;")
    assert scenario["wrong_version_versions"]["cm-alpha"] == "1.0"


def test_deleted_interpreter_is_rebuilt(scenario: dict) -> None:
    result = check(scenario["rebuilt"], "environment")

    assert result.status is CheckStatus.FIXED
    assert "rebuilt" in result.value
    assert "because its interpreter is missing" in result.value
    assert scenario["rebuilt_versions"]["cm-beta"] == "1.0"


def test_rebuild_leaves_no_old_folder(scenario: dict) -> None:
    assert [n for n in scenario["home_entries"] if n.startswith(".environment")] == []


def test_cancelled_run_records_cancelled(tmp_path: Path, wheelhouse: Path) -> None:
    home = make_home(tmp_path)
    cancel = threading.Event()
    cancel.set()
    tracker = SetupTracker(home / "setup_state.json")

    with pytest.raises(SetupCancelledError):
        run_verification(
            options_for(home, wheelhouse),
            tracker=tracker,
            own_setup=True,
            cancel=cancel,
        )
    tracker.close()

    document = state(home)
    assert document["overall_status"] == "cancelled"
    assert document["phases"]["environment_verification"]["status"] == "failed"
    assert not (home / "environment").exists()


def test_check_only_plans_without_environment(tmp_path: Path, wheelhouse: Path) -> None:
    home = make_home(tmp_path)

    report = run_verification(
        options_for(home, wheelhouse, check_only=True), tracker=None, own_setup=True
    )

    assert statuses(report)["environment"] is CheckStatus.FAIL
    packages = check(report, "packages")
    assert packages.status is CheckStatus.FAIL
    assert packages.detail["to_install"] == ["cm-beta==1.0", "cm-alpha==1.0"]
    assert report.installer_runs == 0
    assert not (home / "environment").exists()


@pytest.mark.skipif(os.name != "posix", reason="uses the POSIX environment layout")
def test_uv_creates_and_installs(tmp_path: Path, wheelhouse: Path) -> None:
    from codemate_setup.verify.environment import find_uv

    uv = find_uv()
    if uv is None:
        pytest.skip("uv is not installed here")
    home = make_home(tmp_path)

    report = run(home, wheelhouse, installer="uv")

    assert check(report, "environment").value.startswith(
        f"created {home / 'environment'} with uv venv"
    )
    assert check(report, "packages").status is CheckStatus.FIXED
    assert installed_versions(home / "environment")["cm-alpha"] == "1.0"


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as Python")
def test_too_old_python_builds_nothing(tmp_path: Path, wheelhouse: Path) -> None:
    home = make_home(tmp_path)
    report_json = json.dumps(
        {
            "python": "3.9.18",
            "executable": "/opt/python3.9/bin/python3.9",
            "prefix": "/opt/python3.9",
            "base_prefix": "/opt/python3.9",
            "markers": {"python_version": "3.9", "python_full_version": "3.9.18"},
            "distributions": [],
        }
    )
    old_python = tmp_path / "python3.9"
    old_python.write_text(f"#!/bin/sh\necho '{report_json}'\n")
    old_python.chmod(0o755)

    report = run(home, wheelhouse, python=old_python)

    python_check = check(report, "system.python")
    environment = check(report, "environment")
    assert python_check.status is CheckStatus.FAIL
    assert environment.status is CheckStatus.FAIL
    assert environment.value == (
        f"{home / 'environment'} needs a repair (no environment yet), but Python "
        f"3.9.18 ({old_python}) does not meet >=3.10"
    )
    assert report.installer_runs == 0
    assert not (home / "environment").exists()


def test_missing_listing_is_warning(tmp_path: Path, wheelhouse: Path) -> None:
    home = make_home(tmp_path)
    (home / "installed.json").unlink()

    report = run_verification(
        options_for(home, wheelhouse, check_only=True), tracker=None, own_setup=True
    )

    files = check(report, "files.listing")
    assert files.status is CheckStatus.WARN
    assert files.value == (
        f"cannot verify the files of version 3.0.0: {home / 'installed.json'} not found"
    )


def test_no_installation_is_warning(tmp_path: Path, wheelhouse: Path) -> None:
    home = make_home(tmp_path, installed=False)

    report = run_verification(
        options_for(home, wheelhouse, check_only=True), tracker=None, own_setup=True
    )

    installation = check(report, "installation.version")
    assert installation.status is CheckStatus.WARN
    assert installation.value == (f"no installation: {home / 'version.txt'} not found")
    assert "files.listing" not in statuses(report)


def test_invalid_version_file_is_critical(tmp_path: Path, wheelhouse: Path) -> None:
    home = make_home(tmp_path)
    (home / "version.txt").write_text("three point oh\n")

    report = run_verification(
        options_for(home, wheelhouse, check_only=True), tracker=None, own_setup=True
    )

    installation = check(report, "installation.version")
    assert installation.status is CheckStatus.FAIL
    assert installation.value == (
        f"{home / 'version.txt'} must contain a version such as 3.0.0, found "
        "'three point oh'"
    )
