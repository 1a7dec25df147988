"""Tests of the small-file transport of download_all (codemate_setup.fetch_small).

The reference middleware injects the usual faults into small files. The cases
it cannot produce are in test_http_wire.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from download_support import fast_limits, sha256
from packaging.version import Version

from codemate_setup.client import MiddlewareClient
from codemate_setup.config import Limits
from codemate_setup.download import DownloadItem, download_all
from codemate_setup.errors import IntegrityError, MiddlewareError, SetupCancelledError
from codemate_setup.middleware import FaultConfig
from codemate_setup.publish import publish_release
from codemate_setup.small_transport import SmallFileTransport

V1 = Version("1.0.0")
FILES = {f"pkg/m{n}.py": f"value = {n}\n".encode() * 50 for n in range(6)}
LIMITS = fast_limits(read_timeout=1.0)


def items_for(stage: Path, paths: list[str] | None = None) -> list[DownloadItem]:
    return [
        DownloadItem(V1, path, stage / path, sha256(FILES[path]), len(FILES[path]))
        for path in paths or list(FILES)
    ]


def downloads(handle) -> list:
    return [record for record in handle.requests if record.path.startswith("/download")]


@pytest.fixture
def served(tmp_path, make_tree, start_middleware):
    folder = tmp_path / "releases"
    publish_release(make_tree(tmp_path / "src", FILES), "1.0.0", folder, durable=False)
    return start_middleware(folder)


@pytest.fixture
def client(served):
    with MiddlewareClient(served.url, limits=LIMITS) as middleware_client:
        yield middleware_client


@pytest.fixture
def stage(tmp_path) -> Path:
    return tmp_path / "staging"


def assert_all_staged(stage: Path) -> None:
    for path, data in FILES.items():
        assert (stage / path).read_bytes() == data


# Normal downloads


def test_small_files_one_request_each(client, served, stage) -> None:
    stats = download_all(client, items_for(stage))

    assert_all_staged(stage)
    assert len(downloads(served)) == len(FILES)
    assert stats.files_downloaded == len(FILES)
    assert stats.bytes_downloaded == sum(len(data) for data in FILES.values())


def test_small_files_leave_no_part_files(client, stage) -> None:
    download_all(client, items_for(stage))

    assert list(stage.rglob("*.part*")) == []


def test_small_files_recorded_as_verified(client, stage) -> None:
    stats = download_all(client, items_for(stage))

    dest = stage / "pkg/m0.py"
    assert stats.verified[dest].sha256 == sha256(FILES["pkg/m0.py"])


def test_small_files_send_repo_query(served, stage) -> None:
    with MiddlewareClient(served.url, repo="app", limits=LIMITS) as client:
        download_all(client, items_for(stage, ["pkg/m1.py"]))

    record = downloads(served)[0]
    assert (record.path, record.query) == ("/download/v1.0.0/pkg/m1.py", "repo=app")


def test_transport_used_for_plain_http(served) -> None:
    with MiddlewareClient(served.url, limits=LIMITS) as client:
        assert SmallFileTransport.for_client(client) is not None


def test_transport_not_used_for_https() -> None:
    with MiddlewareClient("https://127.0.0.1:9", limits=LIMITS) as client:
        assert SmallFileTransport.for_client(client) is None


def test_transport_not_used_through_a_proxy(served, monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with MiddlewareClient(served.url, limits=LIMITS) as client:
        assert SmallFileTransport.for_client(client) is None


# Faults of the reference middleware on small files


def test_small_file_503_waits_and_retries(client, served, stage) -> None:
    served.set_faults(FaultConfig(error_status=503, retry_after=0.05, error_count=1))

    stats = download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert_file(stage, "pkg/m0.py")
    assert stats.retries == 1
    assert len(downloads(served)) == 2


def test_small_file_persistent_503_fails(client, served, stage) -> None:
    served.set_faults(FaultConfig(error_status=503, error_count=100))

    with pytest.raises(MiddlewareError, match="failed after 4 attempts: HTTP 503"):
        download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert len(downloads(served)) == 4


def test_small_file_missing_not_retried(client, served, stage) -> None:
    item = DownloadItem(V1, "pkg/none.py", stage / "pkg/none.py", sha256(b"x"), 1)

    with pytest.raises(MiddlewareError, match="not found on the middleware"):
        download_all(client, [item])

    assert len(downloads(served)) == 1


def test_small_file_dropped_body_completes(client, served, stage) -> None:
    served.set_faults(FaultConfig(drop_after_bytes=100, fault_count=1))

    stats = download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert_file(stage, "pkg/m0.py")
    assert stats.retries == 1


def test_small_file_dropped_body_resumes_from_received_bytes(
    client, served, stage
) -> None:
    served.set_faults(FaultConfig(drop_after_bytes=100, fault_count=1))

    download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert [record.range_header for record in downloads(served)] == [
        None,
        "bytes=100-",
    ]


def test_small_file_corrupt_once_restarts(client, served, stage) -> None:
    served.set_faults(FaultConfig(corrupt_bytes=True, fault_count=1))

    stats = download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert_file(stage, "pkg/m0.py")
    assert stats.retries == 1


def test_small_file_always_corrupt_fails(client, served, stage) -> None:
    served.set_faults(FaultConfig(corrupt_bytes=True))

    with pytest.raises(IntegrityError, match="does not match its manifest"):
        download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert not (stage / "pkg/m0.py").exists()


def test_small_file_counts_bytes_received_once(client, served, stage) -> None:
    served.set_faults(FaultConfig(corrupt_bytes=True, fault_count=1))

    stats = download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert stats.bytes_downloaded == 2 * len(FILES["pkg/m0.py"])


@pytest.mark.parametrize("delta", [-1, 1])
def test_small_file_wrong_length_once_recovers(client, served, stage, delta) -> None:
    served.set_faults(FaultConfig(wrong_length=delta, fault_count=1))

    download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert_file(stage, "pkg/m0.py")


@pytest.mark.parametrize("delta", [-1, 1])
def test_small_file_wrong_length_always_fails(client, served, stage, delta) -> None:
    served.set_faults(FaultConfig(wrong_length=delta))

    with pytest.raises(IntegrityError):
        download_all(client, items_for(stage, ["pkg/m0.py"]))


def test_small_file_stall_times_out_then_completes(served, stage) -> None:
    served.set_faults(
        FaultConfig(stall_after_bytes=10, stall_seconds=3.0, fault_count=1)
    )
    limits = Limits(
        backoff_base=0.01, backoff_max=0.02, read_timeout=0.3, disk_reserve_bytes=0
    )

    with MiddlewareClient(served.url, limits=limits) as client:
        stats = download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert_file(stage, "pkg/m0.py")
    assert stats.retries == 1


def test_small_file_cancel_stops_a_stalled_read(client, served, stage) -> None:
    served.set_faults(FaultConfig(stall_after_bytes=10, stall_seconds=30.0))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    slow = Limits(read_timeout=30.0, disk_reserve_bytes=0)

    with (
        MiddlewareClient(served.url, limits=slow) as slow_client,
        pytest.raises(SetupCancelledError),
    ):
        download_all(slow_client, items_for(stage, ["pkg/m0.py"]), cancel=cancel)


def assert_file(stage: Path, path: str) -> None:
    assert (stage / path).read_bytes() == FILES[path]


def test_small_file_replaces_link_in_staging(client, stage, tmp_path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me\n")
    (stage / "pkg").mkdir(parents=True)
    (stage / "pkg/m0.py").symlink_to(outside)

    download_all(client, items_for(stage, ["pkg/m0.py"]))

    assert outside.read_bytes() == b"keep me\n"
    assert not (stage / "pkg/m0.py").is_symlink()
    assert (stage / "pkg/m0.py").read_bytes() == FILES["pkg/m0.py"]
