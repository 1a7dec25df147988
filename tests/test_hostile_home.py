"""Corrupt home files: a clear error or a clean recovery, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from orchestration import ROOT, child_env, read_state, run_setup
from update_helpers import installed_tree, publish_releases, run_cli, tree_snapshot

from codemate_setup.middleware import MiddlewareHandle

OLD_FILES = {"initiate.py": "print('1.0.0')\n", "old.py": "old = 1\n"}
NEW_FILES = {"initiate.py": "print('1.1.0')\n", "new.py": "new = 1\n"}


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    versions = {"1.0.0": OLD_FILES, "1.1.0": NEW_FILES}
    return publish_releases(tmp_path / "releases", versions)


@pytest.fixture
def home(tmp_path: Path, server: MiddlewareHandle) -> Path:
    folder = tmp_path / "home"
    result = run_setup("1.0.0", server.url, folder, "--skip-verification")
    assert result.returncode == 0, result.stderr
    return folder


def test_version_file_not_utf8_rejected(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    (home / "version.txt").write_bytes(b"\xff\xfe1.0.0\n")

    result = run_cli("1.1.0", "--home", str(home), "--middleware-url", server.url)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "must contain an installed version" in result.stderr
    assert "delete it to install afresh" in result.stderr
    assert installed_tree(home) == tree_snapshot(releases / "1.0.0" / "files")


def test_resume_with_corrupt_state_starts_fresh(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    (home / "setup_state.json").write_text("{torn")

    result = run_setup("1.1.0", server.url, home, "--skip-verification", "--resume")

    assert result.returncode == 0, result.stderr
    assert read_state(home)["overall_status"] == "completed"
    assert installed_tree(home) == tree_snapshot(releases / "1.1.0" / "files")
    assert list(home.glob("setup_state.json.corrupt-*"))


def test_resume_with_invalid_state_starts_fresh(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    (home / "setup_state.json").write_text('{"overall_status": "failed"}')

    result = run_setup("1.1.0", server.url, home, "--skip-verification", "--resume")

    assert result.returncode == 0, result.stderr
    assert read_state(home)["overall_status"] == "completed"
    assert list(home.glob("setup_state.json.corrupt-*"))


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("--status",), id="status"),
        pytest.param(("--wait",), id="wait"),
    ],
)
def test_status_of_corrupt_state_names_fix(home: Path, command: tuple[str, ...]):
    (home / "setup_state.json").write_text("{torn")

    result = run_setup(None, "http://127.0.0.1:9", home, *command)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "is not valid JSON" in result.stderr
    assert "the next setup moves it aside" in result.stderr
    assert (home / "setup_state.json").read_text() == "{torn"


@pytest.mark.parametrize(
    "script",
    ["setup_orchestrator.py", "update.py", "verification_env.py"],
)
def test_unusable_setup_lock_names_fix(
    home: Path, server: MiddlewareHandle, script: str
) -> None:
    # A folder in place of the lock file fails to open like a read-only home,
    # also for root, which ignores folder permissions.
    (home / "setup.lock").unlink(missing_ok=True)
    (home / "setup.lock").mkdir()
    args = ["--home", str(home), "--middleware-url", server.url]
    if script != "verification_env.py":
        args.insert(0, "1.1.0")

    result = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot create the setup lock {home / 'setup.lock'}" in result.stderr
    assert "choose a writable folder with --home" in result.stderr
