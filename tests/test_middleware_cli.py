"""The middleware's command line, run as a real child process."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from codemate_setup.middleware import FaultConfig
from codemate_setup.middleware.__main__ import build_parser, faults_from_args

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 30

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def spawn(releases: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "codemate_setup.middleware", str(releases), *flags],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_line(process: subprocess.Popen) -> str:
    """Read the first output line, failing instead of hanging if none comes."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(STARTUP_TIMEOUT_SECONDS)
    assert ready, "the middleware wrote no URL"
    return process.stdout.readline().strip()


@pytest.fixture
def run_cli():
    """Start the CLI with ``run_cli(releases, *flags)``; returns (process, url)."""
    processes: list[subprocess.Popen] = []

    def run(releases: Path, *flags: str) -> tuple[subprocess.Popen, str]:
        process = spawn(releases, "--port", "0", *flags)
        processes.append(process)
        return process, first_line(process)

    yield run

    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def stop(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    return process.returncode, stderr


def test_cli_prints_url_first(example_releases, run_cli):
    _, url = run_cli(example_releases)

    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    assert requests.get(f"{url}/health", timeout=10).json()["releases"] == 2


@posix_only
def test_cli_sigterm_exits_zero(example_releases, run_cli):
    process, url = run_cli(example_releases)
    requests.get(f"{url}/health", timeout=10)

    code, stderr = stop(process, signal.SIGTERM)

    assert code == 0
    assert "received SIGTERM, stopping" in stderr
    assert "stopped" in stderr.splitlines()[-1]


@posix_only
def test_cli_sigint_exits_zero(example_releases, run_cli):
    process, _ = run_cli(example_releases)

    code, stderr = stop(process, signal.SIGINT)

    assert code == 0
    assert "received SIGINT, stopping" in stderr
    assert "Traceback" not in stderr


@posix_only
def test_cli_stops_with_idle_connection(example_releases, run_cli):
    process, url = run_cli(example_releases)
    session = requests.Session()
    session.get(f"{url}/health", timeout=10)

    code, _ = stop(process, signal.SIGTERM)
    session.close()

    assert code == 0


@posix_only
def test_cli_logs_each_request(example_releases, run_cli):
    process, url = run_cli(example_releases)
    requests.get(f"{url}/health", timeout=10)
    requests.get(f"{url}/download/v3.0.0/README.md", timeout=10)
    requests.get(
        f"{url}/download/v3.0.0/README.md", headers={"Range": "bytes=0-4"}, timeout=10
    )

    _, stderr = stop(process, signal.SIGTERM)
    request_lines = [line for line in stderr.splitlines() if " GET " in line]

    assert len(request_lines) == 3
    assert request_lines[0].endswith("GET /health 200 32 bytes")
    assert " 206 5 bytes range=bytes=0-4" in request_lines[2]


def test_cli_legacy_flag(example_releases, run_cli):
    _, url = run_cli(example_releases, "--legacy")

    manifest = requests.get(f"{url}/manifest/v3.0.0", timeout=10).json()

    assert "files" not in manifest
    assert manifest["codebase"]["files_delete"] == ["codemate/legacy_utils.py"]


def test_cli_fault_status_flags(example_releases, run_cli):
    _, url = run_cli(
        example_releases,
        "--fault-status",
        "503",
        "--fault-status-count",
        "1",
        "--fault-retry-after",
        "2",
    )

    first = requests.get(f"{url}/manifest/v3.0.0", timeout=10)
    second = requests.get(f"{url}/manifest/v3.0.0", timeout=10)

    assert first.status_code == 503
    assert first.headers["Retry-After"] == "2"
    assert second.status_code == 200


def test_cli_fault_drop_with_path(example_releases, run_cli):
    _, url = run_cli(
        example_releases, "--fault-drop-after", "10", "--fault-path", "assets/*"
    )

    readme = requests.get(f"{url}/download/v3.0.0/README.md", timeout=10)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{url}/download/v3.0.0/assets/logo.png", timeout=10)

    assert readme.status_code == 200


@posix_only
def test_cli_warns_about_unpublished_folder(tmp_path, run_cli):
    # Release sources, not published releases: nothing can be served.
    (tmp_path / "3.0.0").mkdir()
    process, _url = run_cli(tmp_path, "--quiet")

    _code, stderr = stop(process, signal.SIGTERM)

    assert f"no published release in {tmp_path}" in stderr


@posix_only
def test_cli_quiet_about_published_folder(example_releases, run_cli):
    process, _url = run_cli(example_releases, "--quiet")

    _code, stderr = stop(process, signal.SIGTERM)

    assert "no published release" not in stderr


def test_cli_missing_folder_exits_2(tmp_path):
    process = spawn(tmp_path / "absent", "--port", "0")
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 2
    assert stdout == ""
    assert "error: releases folder" in stderr
    assert "not found" in stderr


def test_cli_invalid_fault_exits_2(example_releases):
    process = spawn(example_releases, "--port", "0", "--fault-status", "200")
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 2
    assert stdout == ""
    assert "invalid fault flag: error_status must be an HTTP error status" in stderr


def test_cli_port_in_use_exits_2(example_releases, middleware):
    process = spawn(example_releases, "--port", str(middleware.port))
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 2
    assert stdout == ""
    assert f"cannot listen on 127.0.0.1 port {middleware.port}" in stderr
    assert "choose another port with --port (0 picks a free one)" in stderr


def test_fault_flags_map_to_config():
    args = build_parser().parse_args(
        [
            "releases",
            "--fault-drop-after",
            "1",
            "--fault-status",
            "429",
            "--fault-status-count",
            "3",
            "--fault-retry-after",
            "0.5",
            "--fault-corrupt",
            "--fault-wrong-length",
            "-7",
            "--fault-rate",
            "1000",
            "--fault-stall-after",
            "5",
            "--fault-stall-seconds",
            "2.5",
            "--fault-count",
            "4",
            "--fault-path",
            "*.bin",
        ]
    )

    assert faults_from_args(args) == FaultConfig(
        drop_after_bytes=1,
        error_status=429,
        error_count=3,
        retry_after=0.5,
        corrupt_bytes=True,
        wrong_length=-7,
        bytes_per_second=1000,
        stall_after_bytes=5,
        stall_seconds=2.5,
        fault_count=4,
        path_glob="*.bin",
    )


def test_no_fault_flags_mean_no_faults():
    args = build_parser().parse_args(["releases"])

    assert faults_from_args(args) == FaultConfig()


def test_default_address_is_loopback():
    args = build_parser().parse_args(["releases"])

    assert args.host == "127.0.0.1"
    assert args.port == 8000
