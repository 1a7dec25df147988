"""Each fault of the reference middleware during an update.

A transient fault is survived by retry or resume and the update completes.
A persistent one fails the update cleanly: the error is in the state file,
the exit code is 1, and the old version is installed byte for byte.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from update_helpers import (
    FAST_LIMITS,
    child_env,
    install_home,
    installed_tree,
    installed_version,
    publish_releases,
    read_state,
    run_cli,
    tree_snapshot,
    update_in_process,
)

from codemate_setup.errors import (
    InstallError,
    IntegrityError,
    MiddlewareError,
    SetupError,
)
from codemate_setup.middleware import FaultConfig, MiddlewareHandle
from codemate_setup.testhooks import FAIL_VARIABLE

BIG = 600_000
OLD_FILES = {
    "initiate.py": "print('1.0.0')\n",
    "data/model.bin": os.urandom(BIG),
    "codemate/core.py": "VERSION = '1.0.0'\n",
}
NEW_FILES = {
    "initiate.py": "print('1.1.0')\n",
    "data/model.bin": os.urandom(BIG),
    "codemate/core.py": "VERSION = '1.1.0'\n",
    "codemate/extra.py": "extra = 1\n",
}


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    versions = {"1.0.0": OLD_FILES, "1.1.0": NEW_FILES}
    return publish_releases(tmp_path / "releases", versions)


@pytest.fixture
def home(tmp_path: Path, server: MiddlewareHandle) -> Path:
    """A home with 1.0.0 installed."""
    return install_home(tmp_path / "home", server, "1.0.0")


def assert_version(home: Path, releases: Path, version: str) -> None:
    assert installed_tree(home) == tree_snapshot(releases / version / "files")
    assert installed_version(home) == version
    assert not (home / "journal.json").exists()


def assert_failed_state(home: Path, *words: str) -> None:
    state = read_state(home)
    assert state["overall_status"] == "failed"
    assert state["phases"]["codebase_update"]["status"] == "failed"
    assert state["error_details"].startswith("codebase_update: ")
    for word in words:
        assert word in state["error_details"]


def download_records(server: MiddlewareHandle, name: str) -> list:
    return [r for r in server.requests if r.path == f"/download/v1.1.0/{name}"]


RECOVERABLE = [
    pytest.param(
        FaultConfig(drop_after_bytes=100_000, fault_count=1, path_glob="data/*"),
        id="drop-mid-body",
    ),
    pytest.param(
        FaultConfig(error_status=503, error_count=2, retry_after=0.05),
        id="503-retry-after",
    ),
    pytest.param(
        FaultConfig(error_status=500, error_count=2, path_glob="codemate/*"),
        id="500-on-downloads",
    ),
    pytest.param(
        FaultConfig(error_status=429, error_count=3, retry_after=0.05),
        id="429-retry-after",
    ),
    pytest.param(
        FaultConfig(corrupt_bytes=True, fault_count=1, path_glob="data/*"),
        id="wrong-bytes-once",
    ),
    pytest.param(
        FaultConfig(wrong_length=-10, fault_count=1, path_glob="data/*"),
        id="short-length-once",
    ),
    pytest.param(
        FaultConfig(wrong_length=10, fault_count=1, path_glob="data/*"),
        id="long-length-once",
    ),
    pytest.param(FaultConfig(bytes_per_second=3_000_000), id="slow"),
]


@pytest.mark.parametrize("faults", RECOVERABLE)
def test_transient_fault_recovered(
    home: Path, releases: Path, server: MiddlewareHandle, faults: FaultConfig
) -> None:
    server.set_faults(faults)

    result = update_in_process(home, server.url, "1.1.0")

    assert result.action == "updated"
    assert_version(home, releases, "1.1.0")
    assert read_state(home)["overall_status"] == "completed"


def test_dropped_download_resumed_with_range(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    server.set_faults(
        FaultConfig(drop_after_bytes=200_000, fault_count=1, path_glob="data/*")
    )

    update_in_process(home, server.url, "1.1.0")

    records = download_records(server, "data/model.bin")
    assert len(records) == 2
    assert records[1].range_header is not None
    assert records[1].status == 206
    assert_version(home, releases, "1.1.0")


@pytest.mark.slow
def test_stalled_download_resumed(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    server.set_faults(
        FaultConfig(
            stall_after_bytes=100_000,
            stall_seconds=3.0,
            fault_count=1,
            path_glob="data/*",
        )
    )

    update_in_process(
        home, server.url, "1.1.0", limits=replace(FAST_LIMITS, read_timeout=0.5)
    )

    assert_version(home, releases, "1.1.0")


PERSISTENT = [
    pytest.param(
        FaultConfig(error_status=500, error_count=1000),
        MiddlewareError,
        id="500-always",
    ),
    pytest.param(
        FaultConfig(error_status=503, error_count=1000, path_glob="data/*"),
        MiddlewareError,
        id="503-always-on-file",
    ),
    pytest.param(
        FaultConfig(corrupt_bytes=True, path_glob="data/*"),
        IntegrityError,
        id="wrong-bytes-always",
    ),
    pytest.param(
        FaultConfig(wrong_length=10, path_glob="data/*"),
        SetupError,
        id="long-length-always",
    ),
    pytest.param(
        FaultConfig(drop_after_bytes=0, path_glob="data/*"),
        SetupError,
        id="drop-always",
    ),
]


@pytest.mark.parametrize(("faults", "error"), PERSISTENT)
def test_persistent_fault_fails_cleanly(
    home: Path,
    releases: Path,
    server: MiddlewareHandle,
    faults: FaultConfig,
    error: type[SetupError],
) -> None:
    server.set_faults(faults)

    with pytest.raises(error) as caught:
        update_in_process(home, server.url, "1.1.0")

    assert caught.value.exit_code == 1
    assert_failed_state(home)
    assert_version(home, releases, "1.0.0")


def test_update_after_failure_completes(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    server.set_faults(FaultConfig(corrupt_bytes=True, path_glob="data/*"))
    with pytest.raises(IntegrityError):
        update_in_process(home, server.url, "1.1.0")
    server.set_faults(FaultConfig())

    result = update_in_process(home, server.url, "1.1.0")

    assert result.action == "updated"
    assert result.files_reused >= 1
    assert_version(home, releases, "1.1.0")


def test_middleware_down_fails_cleanly(home: Path, releases: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    with pytest.raises(MiddlewareError) as caught:
        update_in_process(home, dead_url, "1.1.0")

    assert "cannot reach the middleware" in str(caught.value)
    assert_failed_state(home, "cannot reach the middleware")
    assert_version(home, releases, "1.0.0")


def test_corrupt_download_cli_exit_1(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    server.set_faults(FaultConfig(corrupt_bytes=True, path_glob="data/*"))

    done = run_cli("1.1.0", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 1
    assert "data/model.bin" in done.stderr
    assert_failed_state(home, "data/model.bin")
    assert_version(home, releases, "1.0.0")


@pytest.mark.parametrize("point", ["apply:after-move:1", "apply:after-move:4"])
def test_apply_failure_rolls_back_cli(
    home: Path, releases: Path, server: MiddlewareHandle, point: str
) -> None:
    done = run_cli(
        "1.1.0",
        "--home",
        str(home),
        "--middleware-url",
        server.url,
        env=child_env(**{FAIL_VARIABLE: point}),
    )

    assert done.returncode == 1
    assert "No space left on device" in done.stderr
    assert "rolled back and 1.0.0 is still installed" in done.stderr
    assert_failed_state(home, "rolled back")
    assert_version(home, releases, "1.0.0")
    assert list((home / "backups").iterdir()) == []


def test_commit_failure_rolls_back(
    home: Path,
    releases: Path,
    server: MiddlewareHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FAIL_VARIABLE, "commit:after-version")

    with pytest.raises(InstallError) as caught:
        update_in_process(home, server.url, "1.1.0")

    assert "rolled back" in str(caught.value)
    assert_version(home, releases, "1.0.0")
