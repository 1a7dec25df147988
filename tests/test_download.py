"""Tests of download_all against the reference middleware and its faults."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from download_support import fast_limits, sha256
from packaging.version import Version

from codemate_setup import download_file, download_run
from codemate_setup.client import MiddlewareClient
from codemate_setup.config import Limits
from codemate_setup.download import DownloadItem, DownloadProgress, download_all
from codemate_setup.errors import (
    ExitCode,
    InstallError,
    IntegrityError,
    ManifestError,
    MiddlewareError,
    SetupCancelledError,
)
from codemate_setup.filestore import verify_staged_file
from codemate_setup.middleware import FaultConfig
from codemate_setup.partial import part_path, sidecar_path, write_sidecar
from codemate_setup.publish import publish_release

ROOT = Path(__file__).resolve().parent.parent
V1 = Version("1.0.0")
CHUNK = 64 * 1024
BIG = random.Random(11).randbytes(40 * CHUNK + 123)
FILES = {
    "big.bin": BIG,
    "small.txt": b"small file content\n",
    "pkg/a b.py": b"print('space in the name')\n",
    "empty.txt": b"",
}
FAST = fast_limits(chunk_bytes=CHUNK)


def item_for(stage: Path, path: str, *, legacy: bool = False) -> DownloadItem:
    data = FILES.get(path, b"not published")
    return DownloadItem(
        version=V1,
        path=path,
        dest=stage / path,
        sha256=None if legacy else sha256(data),
        size=None if legacy else len(data),
    )


def all_items(stage: Path, *, legacy: bool = False) -> list[DownloadItem]:
    return [item_for(stage, path, legacy=legacy) for path in FILES]


def leftovers(stage: Path) -> list[str]:
    """Return the partial-download files under ``stage``."""
    return sorted(
        str(path.relative_to(stage))
        for path in stage.rglob("*")
        if path.name.endswith((".part", ".part.json"))
    )


def download_requests(handle) -> list:
    return [record for record in handle.requests if record.path.startswith("/download")]


@pytest.fixture
def releases(tmp_path, make_tree) -> Path:
    folder = tmp_path / "releases"
    tree = make_tree(tmp_path / "src", FILES)
    publish_release(tree, "1.0.0", folder, durable=False)
    return folder


@pytest.fixture
def served(releases, start_middleware):
    return start_middleware(releases)


@pytest.fixture
def client(served):
    with MiddlewareClient(served.url, limits=FAST) as middleware_client:
        yield middleware_client


@pytest.fixture
def stage(tmp_path) -> Path:
    return tmp_path / "staging" / "files"


# Normal downloads


def test_download_all_fetches_every_file(client, served, stage) -> None:
    stats = download_all(client, all_items(stage))

    for path, data in FILES.items():
        assert (stage / path).read_bytes() == data
    assert leftovers(stage) == []
    assert stats.files_downloaded == 4
    assert stats.files_reused == 0
    assert stats.bytes_downloaded == sum(len(data) for data in FILES.values())
    assert stats.retries == 0


def test_empty_file_needs_no_request(client, served, stage) -> None:
    download_all(client, [item_for(stage, "empty.txt")])

    assert (stage / "empty.txt").read_bytes() == b""
    assert download_requests(served) == []


def test_download_sends_repo_and_identity(served, stage) -> None:
    with MiddlewareClient(served.url, repo="app", limits=FAST) as client:
        download_all(client, [item_for(stage, "pkg/a b.py")])

    record = download_requests(served)[0]
    assert record.path == "/download/v1.0.0/pkg/a%20b.py"
    assert record.query == "repo=app"


def test_download_progress_final_report(client, stage) -> None:
    reports: list[DownloadProgress] = []

    download_all(client, all_items(stage), on_progress=reports.append)

    total = sum(len(data) for data in FILES.values())
    final = reports[-1]
    assert final.bytes_done == total
    assert final.bytes_total == total
    assert final.files_done == 4
    assert final.files_total == 4
    assert final.eta_seconds == 0.0


def test_download_progress_never_decreases(client, served, stage) -> None:
    # A corrupted first body makes the file restart from byte 0.
    served.set_faults(FaultConfig(corrupt_bytes=True, fault_count=1))
    reports: list[DownloadProgress] = []

    download_all(client, [item_for(stage, "big.bin")], on_progress=reports.append)

    done = [report.bytes_done for report in reports]
    assert done == sorted(done)
    assert done[-1] == len(BIG)


def test_legacy_items_download(releases, start_middleware, stage) -> None:
    handle = start_middleware(releases, legacy=True)
    with MiddlewareClient(handle.url, limits=FAST) as client:
        stats = download_all(client, all_items(stage, legacy=True))

    for path, data in FILES.items():
        assert (stage / path).read_bytes() == data
    assert stats.files_downloaded == 4


def test_legacy_progress_total_unknown(client, stage) -> None:
    reports: list[DownloadProgress] = []

    download_all(
        client, [item_for(stage, "small.txt", legacy=True)], on_progress=reports.append
    )

    assert reports[-1].bytes_total is None
    assert reports[-1].eta_seconds is None
    assert reports[-1].files_done == 1


def test_replaced_part_file_fails_staged_check(client, stage, monkeypatch) -> None:
    real_replace = download_file.replace_with_retry

    def replace_part_first(source: Path, target: Path) -> None:
        # Another process puts a file of the same size at the part file's path.
        other = source.with_name("other")
        other.write_bytes(bytes(len(BIG)))
        os.replace(other, source)
        real_replace(source, target)

    monkeypatch.setattr(download_file, "replace_with_retry", replace_part_first)
    item = item_for(stage, "big.bin")
    stats = download_all(client, [item])

    with pytest.raises(IntegrityError):
        verify_staged_file(
            "big.bin", item.dest, item.sha256, item.size, stats.verified[item.dest]
        )


# Reuse of staged files


def test_second_run_reuses_staged_files(client, served, stage) -> None:
    download_all(client, all_items(stage))
    requests_before = len(served.requests)

    stats = download_all(client, all_items(stage))

    assert stats.files_reused == 4
    assert stats.files_downloaded == 0
    assert stats.bytes_reused == sum(len(data) for data in FILES.values())
    assert len(served.requests) == requests_before


def test_replaced_reused_file_fails_staged_check(client, stage, monkeypatch) -> None:
    item = item_for(stage, "big.bin")
    download_all(client, [item])
    real_hash_stream = download_run.hash_stream

    def hash_then_replace(run, handle, hasher):
        digest = real_hash_stream(run, handle, hasher)
        # Another process puts a file of the same size at the staged path.
        other = stage / "other"
        other.write_bytes(bytes(len(BIG)))
        os.replace(other, item.dest)
        return digest

    monkeypatch.setattr(download_run, "hash_stream", hash_then_replace)
    stats = download_all(client, [item])

    with pytest.raises(IntegrityError):
        verify_staged_file(
            "big.bin", item.dest, item.sha256, item.size, stats.verified[item.dest]
        )


def test_wrong_staged_file_fetched_again(client, stage) -> None:
    (stage / "pkg").mkdir(parents=True)
    (stage / "small.txt").write_bytes(b"stale content of the same size!!\n"[:19])

    stats = download_all(client, [item_for(stage, "small.txt")])

    assert (stage / "small.txt").read_bytes() == FILES["small.txt"]
    assert stats.files_reused == 0


def test_legacy_staged_file_not_reused(client, served, stage) -> None:
    stage.mkdir(parents=True)
    (stage / "small.txt").write_bytes(FILES["small.txt"])

    stats = download_all(client, [item_for(stage, "small.txt", legacy=True)])

    assert stats.files_downloaded == 1
    assert len(download_requests(served)) == 1


# Faults of the reference middleware


def test_dropped_body_resumes_with_range(client, served, stage) -> None:
    served.set_faults(
        FaultConfig(drop_after_bytes=300_000, fault_count=1, path_glob="big.bin")
    )

    stats = download_all(client, all_items(stage))

    assert (stage / "big.bin").read_bytes() == BIG
    assert stats.resumes == 1
    assert stats.retries == 1
    big_requests = [r for r in download_requests(served) if r.path.endswith("big.bin")]
    assert [r.range_header for r in big_requests] == [None, "bytes=300000-"]
    assert big_requests[1].status == 206


def test_retry_logged_with_file_and_reason(client, served, stage, caplog) -> None:
    caplog.set_level(logging.INFO, logger="codemate_setup.download_file")
    served.set_faults(FaultConfig(drop_after_bytes=1000, fault_count=1))

    download_all(client, [item_for(stage, "big.bin")])

    assert "retry 1 of 3 for big.bin of release 1.0.0" in caplog.text
    assert f"the connection closed after 1000 of {len(BIG)} bytes" in caplog.text


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_retried(client, served, stage, status: int) -> None:
    served.set_faults(FaultConfig(error_status=status, error_count=2, retry_after=0.01))

    stats = download_all(client, [item_for(stage, "small.txt")])

    assert (stage / "small.txt").read_bytes() == FILES["small.txt"]
    assert stats.retries == 2
    assert [r.status for r in download_requests(served)] == [status, status, 200]


def test_persistent_server_error_fails(client, served, stage) -> None:
    served.set_faults(
        FaultConfig(error_status=503, error_count=100, path_glob="small.txt")
    )

    with pytest.raises(MiddlewareError) as caught:
        download_all(client, [item_for(stage, "small.txt")])

    assert "downloading small.txt of release 1.0.0 from the middleware at" in str(
        caught.value
    )
    assert "failed after 4 attempts: HTTP 503" in str(caught.value)
    assert len(download_requests(served)) == FAST.max_retries + 1
    assert not (stage / "small.txt").exists()


def test_missing_file_not_retried(client, served, stage) -> None:
    with pytest.raises(MiddlewareError) as caught:
        download_all(client, [item_for(stage, "missing.txt")])

    assert str(caught.value).startswith(
        "file missing.txt of release 1.0.0 not found on the middleware at"
    )
    assert len(download_requests(served)) == 1


def test_corrupt_body_raises_integrity_error(client, served, stage) -> None:
    served.set_faults(FaultConfig(corrupt_bytes=True))

    with pytest.raises(IntegrityError) as caught:
        download_all(client, [item_for(stage, "big.bin")])

    corrupted = bytes(byte ^ 0xFF for byte in BIG)
    message = str(caught.value)
    assert "downloaded file big.bin of release 1.0.0" in message
    assert f"expected sha256 {sha256(BIG)}, got sha256 {sha256(corrupted)}" in message
    assert caught.value.exit_code == ExitCode.FAILED
    assert len(download_requests(served)) == 2
    assert leftovers(stage) == []
    assert not (stage / "big.bin").exists()


def test_corrupt_once_restarts_from_scratch(client, served, stage) -> None:
    served.set_faults(FaultConfig(corrupt_bytes=True, fault_count=1))

    stats = download_all(client, [item_for(stage, "big.bin")])

    assert (stage / "big.bin").read_bytes() == BIG
    assert stats.retries == 1
    assert [r.range_header for r in download_requests(served)] == [None, None]


@pytest.mark.parametrize("delta", [10, -10])
def test_wrong_length_raises_integrity_error(client, served, stage, delta) -> None:
    served.set_faults(FaultConfig(wrong_length=delta))

    with pytest.raises(IntegrityError) as caught:
        download_all(client, [item_for(stage, "big.bin")])

    assert (
        f"expected {len(BIG)} bytes, got a server length of {len(BIG) + delta}"
        in str(caught.value)
    )
    assert not (stage / "big.bin").exists()


@pytest.mark.parametrize("delta", [10, -10])
def test_wrong_length_once_recovers(client, served, stage, delta) -> None:
    served.set_faults(FaultConfig(wrong_length=delta, fault_count=1))

    download_all(client, [item_for(stage, "big.bin")])

    assert (stage / "big.bin").read_bytes() == BIG


def test_legacy_short_length_caught(client, served, stage) -> None:
    # Without a manifest size, a Content-Length above the bytes sent is the
    # only evidence; the body ends early every time.
    served.set_faults(FaultConfig(wrong_length=10))

    with pytest.raises(MiddlewareError) as caught:
        download_all(client, [item_for(stage, "small.txt", legacy=True)])

    assert "failed after 4 attempts" in str(caught.value)
    assert not (stage / "small.txt").exists()


def test_slow_server_completes(client, served, stage) -> None:
    served.set_faults(FaultConfig(bytes_per_second=2_000_000))

    download_all(client, [item_for(stage, "big.bin")])

    assert (stage / "big.bin").read_bytes() == BIG


def test_stall_times_out_then_resumes(served, stage) -> None:
    limits = Limits(
        backoff_base=0.01,
        backoff_max=0.02,
        read_timeout=0.3,
        chunk_bytes=CHUNK,
        disk_reserve_bytes=0,
    )
    served.set_faults(
        FaultConfig(stall_after_bytes=200_000, stall_seconds=3.0, fault_count=1)
    )

    with MiddlewareClient(served.url, limits=limits) as client:
        stats = download_all(client, [item_for(stage, "big.bin")])

    assert (stage / "big.bin").read_bytes() == BIG
    assert stats.resumes == 1
    assert download_requests(served)[-1].range_header == "bytes=200000-"
    assert len(download_requests(served)) == 2


def test_dead_server_fails_clearly(served, stage) -> None:
    url = served.url
    served.stop()

    with (
        MiddlewareClient(url, limits=FAST) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        download_all(client, [item_for(stage, "small.txt")])

    assert str(caught.value) == (
        f"downloading small.txt of release 1.0.0 from the middleware at {url}/ "
        "failed after 4 attempts: connection refused; check the middleware and "
        "run the update again to resume"
    )


def test_credentials_never_in_errors_or_logs(served, stage, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = served.url.replace("http://", "http://bob:hunter2@")

    with (
        MiddlewareClient(url, limits=FAST) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        download_all(client, [item_for(stage, "missing.txt")])

    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in caplog.text


# Partial files from an earlier run


def test_earlier_part_with_same_hash_resumed(client, served, stage) -> None:
    item = item_for(stage, "big.bin")
    stage.mkdir(parents=True)
    part_path(item.dest).write_bytes(BIG[:500_000])
    write_sidecar(item)

    stats = download_all(client, [item])

    assert item.dest.read_bytes() == BIG
    assert download_requests(served)[0].range_header == "bytes=500000-"
    assert stats.resumes == 1
    assert stats.bytes_reused == 500_000
    assert stats.bytes_downloaded == len(BIG) - 500_000
    assert leftovers(stage) == []


def test_complete_earlier_part_needs_no_request(client, served, stage) -> None:
    item = item_for(stage, "big.bin")
    stage.mkdir(parents=True)
    part_path(item.dest).write_bytes(BIG)
    write_sidecar(item)

    download_all(client, [item])

    assert item.dest.read_bytes() == BIG
    assert download_requests(served) == []


def test_earlier_part_with_other_hash_discarded(client, served, stage) -> None:
    item = item_for(stage, "big.bin")
    stage.mkdir(parents=True)
    older = DownloadItem(V1, "big.bin", item.dest, sha256(b"older release"), len(BIG))
    part_path(item.dest).write_bytes(b"x" * 500_000)
    write_sidecar(older)

    stats = download_all(client, [item])

    assert item.dest.read_bytes() == BIG
    assert download_requests(served)[0].range_header is None
    assert stats.resumes == 0
    assert stats.bytes_reused == 0


def test_earlier_part_without_sidecar_discarded(client, served, stage) -> None:
    item = item_for(stage, "big.bin")
    stage.mkdir(parents=True)
    part_path(item.dest).write_bytes(BIG[:500_000])

    download_all(client, [item])

    assert item.dest.read_bytes() == BIG
    assert download_requests(served)[0].range_header is None


def test_earlier_part_longer_than_size_discarded(client, served, stage) -> None:
    item = item_for(stage, "big.bin")
    stage.mkdir(parents=True)
    part_path(item.dest).write_bytes(BIG + b"extra")
    write_sidecar(item)

    download_all(client, [item])

    assert item.dest.read_bytes() == BIG
    assert download_requests(served)[0].range_header is None


def test_earlier_corrupt_part_restarts(client, served, stage) -> None:
    item = item_for(stage, "big.bin")
    stage.mkdir(parents=True)
    part_path(item.dest).write_bytes(b"\0" * 500_000)
    write_sidecar(item)

    stats = download_all(client, [item])

    assert item.dest.read_bytes() == BIG
    assert [r.range_header for r in download_requests(served)] == [
        "bytes=500000-",
        None,
    ]
    assert stats.retries == 1


def test_legacy_part_never_resumed(client, served, stage) -> None:
    item = item_for(stage, "big.bin", legacy=True)
    stage.mkdir(parents=True)
    part_path(item.dest).write_bytes(BIG[:500_000])
    sidecar_path(item.dest).write_text("{}")

    download_all(client, [item])

    assert item.dest.read_bytes() == BIG
    assert download_requests(served)[0].range_header is None
    assert leftovers(stage) == []


CHILD_SCRIPT = """
import sys
from pathlib import Path
from packaging.version import Version
from codemate_setup.client import MiddlewareClient
from codemate_setup.config import Limits
from codemate_setup.download import DownloadItem, download_all

url, dest, digest, size = sys.argv[1:5]
limits = Limits(chunk_bytes=16384, disk_reserve_bytes=0)
with MiddlewareClient(url, limits=limits) as client:
    item = DownloadItem(Version("1.0.0"), "big.bin", Path(dest), digest, int(size))
    download_all(client, [item])
"""


def test_killed_download_resumes_next_run(client, served, stage) -> None:
    served.set_faults(FaultConfig(bytes_per_second=400_000))
    item = item_for(stage, "big.bin")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD_SCRIPT,
            served.url,
            str(item.dest),
            item.sha256,
            str(item.size),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    part = part_path(item.dest)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if part.exists() and part.stat().st_size >= 100_000:
                break
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    part_bytes_kept = part.stat().st_size
    served.set_faults(None)

    stats = download_all(client, [item])

    assert child.returncode == -signal.SIGKILL
    assert 0 < part_bytes_kept < len(BIG)
    assert item.dest.read_bytes() == BIG
    assert download_requests(served)[-1].range_header == f"bytes={part_bytes_kept}-"
    assert stats.bytes_reused == part_bytes_kept


# Disk space


def test_full_disk_rejected_before_download(served, stage) -> None:
    limits = Limits(disk_reserve_bytes=1000, chunk_bytes=CHUNK)
    with (
        MiddlewareClient(served.url, limits=limits) as reserve_client,
        pytest.raises(InstallError) as caught,
    ):
        download_all(reserve_client, all_items(stage), disk_free=lambda p: 5000)

    needed = sum(len(data) for data in FILES.values())
    message = str(caught.value)
    assert "not enough free disk space in" in message
    assert f"the download needs {needed + 1000} bytes" in message
    assert "but only 5000 bytes are free" in message
    assert download_requests(served) == []
    assert not stage.exists() or list(stage.rglob("*")) == []


def test_disk_check_counts_remaining_bytes(client, stage) -> None:
    item = item_for(stage, "big.bin")
    stage.mkdir(parents=True)
    part_path(item.dest).write_bytes(BIG[:500_000])
    write_sidecar(item)
    requested_folders: list[Path] = []

    def exactly_enough(folder: Path) -> int:
        requested_folders.append(folder)
        return len(BIG) - 500_000

    download_all(client, [item], disk_free=exactly_enough)

    assert item.dest.read_bytes() == BIG
    assert requested_folders == [stage]


# Cancellation


@pytest.mark.timeout(30)
def test_cancel_stops_downloads_and_keeps_parts(client, served, stage) -> None:
    served.set_faults(FaultConfig(bytes_per_second=100_000))
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()

    try:
        with pytest.raises(SetupCancelledError) as caught:
            download_all(client, all_items(stage), cancel=cancel)
    finally:
        timer.cancel()

    item = item_for(stage, "big.bin")
    assert caught.value.exit_code == ExitCode.INTERRUPTED
    assert "partial files are kept" in str(caught.value)
    assert 0 < part_path(item.dest).stat().st_size < len(BIG)
    assert sidecar_path(item.dest).exists()
    assert not item.dest.exists()


def test_cancel_before_start_sends_nothing(client, served, stage) -> None:
    cancel = threading.Event()
    cancel.set()

    with pytest.raises(SetupCancelledError):
        download_all(client, all_items(stage), cancel=cancel)

    assert download_requests(served) == []


def test_failure_stops_other_downloads(client, served, stage) -> None:
    served.set_faults(FaultConfig(bytes_per_second=100_000, path_glob="big.bin"))
    items = [item_for(stage, "big.bin"), item_for(stage, "missing.txt")]

    with pytest.raises(MiddlewareError, match="missing.txt"):
        download_all(client, items, workers=2)

    assert not (stage / "big.bin").exists()
    assert part_path(stage / "big.bin").exists()


# Stalled transfers


@pytest.mark.timeout(30)
def test_stalled_download_fails_after_retries(served, stage) -> None:
    served.set_faults(FaultConfig(bytes_per_second=200))
    limits = fast_limits(low_speed_bytes=1000, low_speed_seconds=0.3, max_retries=1)
    item = item_for(stage, "big.bin")

    with (
        MiddlewareClient(served.url, limits=limits) as slow_client,
        pytest.raises(MiddlewareError) as caught,
    ):
        download_all(slow_client, [item])

    message = str(caught.value)
    assert "failed after 2 attempts: the transfer stalled: " in message
    assert "fewer than the 1000 bytes required every 0.3 s" in message
    assert not item.dest.exists()
    assert 0 < part_path(item.dest).stat().st_size < len(BIG)


@pytest.mark.timeout(30)
def test_stalled_small_file_fails_after_retries(served, stage) -> None:
    served.set_faults(FaultConfig(bytes_per_second=5, path_glob="small.txt"))
    limits = fast_limits(low_speed_bytes=100, low_speed_seconds=0.3, max_retries=1)
    item = item_for(stage, "small.txt")

    with (
        MiddlewareClient(served.url, limits=limits) as slow_client,
        pytest.raises(MiddlewareError, match="the transfer stalled: "),
    ):
        download_all(slow_client, [item])

    assert not item.dest.exists()


@pytest.mark.timeout(30)
def test_slow_download_above_floor_completes(served, stage) -> None:
    served.set_faults(FaultConfig(bytes_per_second=2_000_000))
    limits = fast_limits(low_speed_bytes=1000, low_speed_seconds=0.3, max_retries=0)
    item = item_for(stage, "big.bin")

    with MiddlewareClient(served.url, limits=limits) as slow_client:
        download_all(slow_client, [item])

    assert item.dest.read_bytes() == BIG


# Invalid input


def test_duplicate_destinations_rejected(client, stage) -> None:
    item = item_for(stage, "small.txt")

    with pytest.raises(ValueError, match="must be distinct"):
        download_all(client, [item, item])


def test_part_name_collision_rejected(client, stage) -> None:
    item = item_for(stage, "small.txt")
    clash = DownloadItem(V1, "small.txt.part", stage / "small.txt.part", None, None)

    with pytest.raises(ManifestError) as caught:
        download_all(client, [item, clash])

    assert "small.txt.part has the name of the partial download of small.txt" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("sha", "size", "message"),
    [
        ("abc", 1, "invalid sha256 'abc' for small.txt: expected 64 hexadecimal"),
        (None, -1, "invalid size -1 for small.txt"),
        (None, True, "invalid size True for small.txt"),
        (None, 10**12, "must be at most 17179869184 bytes, but the manifest"),
    ],
    ids=["short-sha", "negative-size", "bool-size", "huge-size"],
)
def test_invalid_item_rejected(client, served, stage, sha, size, message) -> None:
    item = DownloadItem(V1, "small.txt", stage / "small.txt", sha, size)

    with pytest.raises(ManifestError) as caught:
        download_all(client, [item])

    assert message in str(caught.value)
    assert download_requests(served) == []


def test_zero_workers_rejected(client, stage) -> None:
    with pytest.raises(ValueError, match="workers must be 1 or more, got 0"):
        download_all(client, [item_for(stage, "small.txt")], workers=0)


def test_no_items_is_a_no_op(client, served) -> None:
    stats = download_all(client, [])

    assert stats.files_downloaded == 0
    assert served.requests == []
