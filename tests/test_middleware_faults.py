"""Fault injection of the reference middleware, one mode at a time."""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time

import pytest

from codemate_setup.middleware import FaultConfig
from codemate_setup.middleware.faults import BodyPlan, FaultState, corrupt, plan_body
from codemate_setup.publish import publish_release

DATA = random.Random(7).randbytes(200_000)
SMALL = b"small file content\n"


@pytest.fixture
def served(tmp_path, make_tree, start_middleware):
    releases = tmp_path / "releases"
    tree = make_tree(tmp_path / "src", {"data.bin": DATA, "small.txt": SMALL})
    publish_release(tree, "1.0.0", releases, durable=False)
    return start_middleware(releases)


def open_get(handle, path: str, headers: dict[str, str] | None = None, timeout=10):
    connection = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=timeout)
    connection.request("GET", path, headers=headers or {})
    return connection, connection.getresponse()


def fetch(handle, path: str, headers: dict[str, str] | None = None):
    """Return status, headers and the body bytes that arrived, complete or not."""
    connection, response = open_get(handle, path, headers)
    try:
        body = response.read()
    except http.client.IncompleteRead as e:
        body = e.partial
    connection.close()
    return response.status, response.headers, body


def test_no_faults_by_default(served):
    status, headers, body = fetch(served, "/download/v1.0.0/data.bin")

    assert status == 200
    assert body == DATA


def test_drop_after_bytes_cuts_body(served):
    served.set_faults(FaultConfig(drop_after_bytes=1000))

    connection, response = open_get(served, "/download/v1.0.0/data.bin")
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    connection.close()

    assert response.headers["Content-Length"] == str(len(DATA))
    assert caught.value.partial == DATA[:1000]
    assert served.requests[-1].bytes_sent == 1000


def test_drop_after_zero_sends_headers_only(served):
    served.set_faults(FaultConfig(drop_after_bytes=0))

    status, headers, body = fetch(served, "/download/v1.0.0/data.bin")

    assert status == 200
    assert headers["Content-Length"] == str(len(DATA))
    assert body == b""


def test_error_status_for_first_k(served):
    served.set_faults(FaultConfig(error_status=503, error_count=2, retry_after=1.5))

    results = [fetch(served, "/download/v1.0.0/small.txt") for _ in range(3)]

    assert [status for status, _, _ in results] == [503, 503, 200]
    assert results[0][1]["Retry-After"] == "1.5"
    assert json.loads(results[0][2])["status"] == 503
    assert "injected fault" in json.loads(results[0][2])["error"]
    assert results[2][2] == SMALL


def test_error_429_retry_after_integer(served):
    served.set_faults(FaultConfig(error_status=429, retry_after=2))

    status, headers, _ = fetch(served, "/download/v1.0.0/small.txt")

    assert status == 429
    assert headers["Retry-After"] == "2"


def test_error_500_without_retry_after(served):
    served.set_faults(FaultConfig(error_status=500))

    status, headers, _ = fetch(served, "/download/v1.0.0/small.txt")

    assert status == 500
    assert "Retry-After" not in headers


def test_error_without_glob_hits_manifest(served):
    served.set_faults(FaultConfig(error_status=503, error_count=1))

    first, _, _ = fetch(served, "/manifest/v1.0.0")
    second, _, body = fetch(served, "/manifest/v1.0.0")

    assert first == 503
    assert second == 200
    assert json.loads(body)["version"] == "1.0.0"


def test_error_with_glob_spares_others(served):
    served.set_faults(FaultConfig(error_status=500, error_count=1, path_glob="*.bin"))

    manifest, _, _ = fetch(served, "/manifest/v1.0.0")
    small, _, _ = fetch(served, "/download/v1.0.0/small.txt")
    data_first, _, _ = fetch(served, "/download/v1.0.0/data.bin")
    data_second, _, _ = fetch(served, "/download/v1.0.0/data.bin")

    assert manifest == 200
    assert small == 200
    assert data_first == 500
    assert data_second == 200


def test_corrupt_bytes_keeps_length(served):
    served.set_faults(FaultConfig(corrupt_bytes=True))

    status, headers, body = fetch(served, "/download/v1.0.0/data.bin")

    assert status == 200
    assert len(body) == len(DATA)
    assert headers["Content-Length"] == str(len(DATA))
    assert body == bytes(b ^ 0xFF for b in DATA)


def test_corrupt_bytes_in_range(served):
    served.set_faults(FaultConfig(corrupt_bytes=True))

    status, _, body = fetch(
        served, "/download/v1.0.0/data.bin", {"Range": "bytes=100-199"}
    )

    assert status == 206
    assert body == corrupt(DATA[100:200])


def test_corrupt_spares_json(served):
    served.set_faults(FaultConfig(corrupt_bytes=True))

    status, _, body = fetch(served, "/manifest/v1.0.0")

    assert status == 200
    assert json.loads(body)["version"] == "1.0.0"


def test_wrong_length_longer_declared(served):
    served.set_faults(FaultConfig(wrong_length=100))

    connection, response = open_get(served, "/download/v1.0.0/small.txt")
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    connection.close()

    assert response.headers["Content-Length"] == str(len(SMALL) + 100)
    assert caught.value.partial == SMALL


def test_wrong_length_shorter_declared(served):
    served.set_faults(FaultConfig(wrong_length=-5))

    status, headers, body = fetch(served, "/download/v1.0.0/small.txt")

    assert status == 200
    assert headers["Content-Length"] == str(len(SMALL) - 5)
    assert headers["Connection"] == "close"
    assert body == SMALL[:-5]


def test_throttle_delivers_intact_body(served):
    """The throttle paces the body, so it cannot arrive sooner than size / rate.

    This is a lower bound that the throttle itself sets, not a speed goal.
    """
    served.set_faults(FaultConfig(bytes_per_second=50_000))
    began = time.monotonic()

    status, _, body = fetch(
        served, "/download/v1.0.0/data.bin", {"Range": "bytes=0-9999"}
    )

    assert status == 206
    assert body == DATA[:10_000]
    assert time.monotonic() - began >= 10_000 / 50_000 * 0.9


def test_stall_times_out_client(served):
    served.set_faults(FaultConfig(stall_after_bytes=1000, stall_seconds=30))

    connection, response = open_get(served, "/download/v1.0.0/data.bin", timeout=0.5)
    first = response.read(1000)
    with pytest.raises(socket.timeout):
        response.read(1)
    connection.close()

    assert first == DATA[:1000]


def test_stall_then_body_completes(served):
    served.set_faults(FaultConfig(stall_after_bytes=500, stall_seconds=0.2))

    status, _, body = fetch(served, "/download/v1.0.0/data.bin")

    assert status == 200
    assert body == DATA


def test_stop_ends_a_stall(served):
    served.set_faults(FaultConfig(stall_after_bytes=10, stall_seconds=120))
    connection, response = open_get(served, "/download/v1.0.0/data.bin", timeout=60)
    response.read(10)

    stopper = threading.Thread(target=served.stop)
    stopper.start()
    stopper.join(30)
    try:
        rest = response.read()
    except (http.client.IncompleteRead, ConnectionError) as e:
        rest = getattr(e, "partial", b"")
    connection.close()

    assert not stopper.is_alive()
    assert len(rest) < len(DATA) - 10


def test_fault_count_limits_body_faults(served):
    served.set_faults(FaultConfig(corrupt_bytes=True, fault_count=1))

    _, _, first = fetch(served, "/download/v1.0.0/small.txt")
    _, _, second = fetch(served, "/download/v1.0.0/small.txt")

    assert first == corrupt(SMALL)
    assert second == SMALL


def test_path_glob_limits_body_faults(served):
    served.set_faults(FaultConfig(corrupt_bytes=True, path_glob="data.*"))

    _, _, small = fetch(served, "/download/v1.0.0/small.txt")
    _, _, data = fetch(served, "/download/v1.0.0/data.bin")

    assert small == SMALL
    assert data == corrupt(DATA)


def test_injected_error_not_counted_as_body_fault(served):
    served.set_faults(
        FaultConfig(error_status=503, error_count=1, corrupt_bytes=True, fault_count=1)
    )

    results = [fetch(served, "/download/v1.0.0/small.txt") for _ in range(3)]

    assert results[0][0] == 503
    assert results[1][2] == corrupt(SMALL)
    assert results[2][2] == SMALL


def test_set_faults_restarts_counts(served):
    served.set_faults(FaultConfig(error_status=503))
    first, _, _ = fetch(served, "/health")
    second, _, _ = fetch(served, "/health")

    served.set_faults(FaultConfig(error_status=503))
    third, _, _ = fetch(served, "/health")

    assert (first, second, third) == (503, 200, 503)


def test_set_faults_none_clears(served):
    served.set_faults(FaultConfig(corrupt_bytes=True))
    served.set_faults(None)

    _, _, body = fetch(served, "/download/v1.0.0/small.txt")

    assert body == SMALL
    assert served.faults == FaultConfig()


def test_head_ignores_body_faults(served):
    served.set_faults(FaultConfig(wrong_length=10, fault_count=1))
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    connection.request("HEAD", "/download/v1.0.0/small.txt")
    head = connection.getresponse()
    head.read()
    connection.close()

    _, headers, _ = fetch(served, "/download/v1.0.0/small.txt")

    assert head.headers["Content-Length"] == str(len(SMALL))
    assert headers["Content-Length"] == str(len(SMALL) + 10)


def test_faults_at_start(tmp_path, make_tree, start_middleware):
    releases = tmp_path / "releases"
    publish_release(make_tree(tmp_path / "src", {"a.txt": "a"}), "1.0", releases)
    handle = start_middleware(releases, faults=FaultConfig(error_status=503))

    status, _, _ = fetch(handle, "/health")

    assert status == 503


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"error_status": 200}, "error_status must be an HTTP error status"),
        ({"error_count": -1}, "error_count must be >= 0"),
        ({"drop_after_bytes": -1}, "drop_after_bytes must be >= 0"),
        ({"bytes_per_second": 0}, "bytes_per_second must be >= 1"),
        ({"stall_seconds": -1}, "stall_seconds must be >= 0"),
        ({"retry_after": -1}, "retry_after must be >= 0"),
        ({"fault_count": -2}, "fault_count must be >= 0"),
    ],
    ids=[
        "success-status",
        "negative-count",
        "negative-drop",
        "zero-rate",
        "negative-stall",
        "negative-retry",
        "negative-fault-count",
    ],
)
def test_fault_config_rejects_invalid(options, message):
    with pytest.raises(ValueError, match=message):
        FaultConfig(**options)


def test_plan_body_without_faults():
    assert plan_body(None, 10) == BodyPlan(declared_length=10, send_bytes=10)


def test_plan_body_negative_length_clamps():
    plan = plan_body(FaultConfig(wrong_length=-50), 10)

    assert plan.declared_length == 0
    assert plan.send_bytes == 0


def test_plan_body_drop_past_end():
    plan = plan_body(FaultConfig(drop_after_bytes=100), 10)

    assert plan.send_bytes == 10
    assert not plan.close_after


def test_plan_body_stall_past_end_ignored():
    assert (
        plan_body(FaultConfig(stall_after_bytes=10, stall_seconds=1), 10).stall_at
        is None
    )


def test_fault_state_glob_ignores_json():
    state = FaultState(FaultConfig(error_status=500, path_glob="*"))

    assert state.take_error(None) is None
