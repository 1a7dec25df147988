"""Tests of the retry policy: which failures to retry and how long to wait."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import requests

from codemate_setup.retry import (
    backoff_delay,
    describe_request_error,
    is_connection_refused,
    is_retryable_exception,
    is_retryable_status,
    parse_retry_after,
    retry_wait,
)

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("attempt", "expected_window"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 10.0), (200, 10.0)],
)
def test_backoff_delay_window_doubles_to_cap(
    attempt: int, expected_window: float
) -> None:
    delay = backoff_delay(attempt, base=0.5, maximum=10.0, rand=lambda: 1.0)

    assert delay == pytest.approx(expected_window)


def test_backoff_delay_full_jitter_reaches_zero() -> None:
    assert backoff_delay(3, base=0.5, maximum=10.0, rand=lambda: 0.0) == 0.0


def test_backoff_delay_scales_with_random() -> None:
    assert backoff_delay(2, base=0.5, maximum=10.0, rand=lambda: 0.25) == 0.25


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        (" 12 ", 12.0),
        ("0.25", 0.25),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("soon", None),
        ("-3", None),
        ("", None),
        (None, None),
    ],
    ids=[
        "seconds",
        "spaces",
        "decimal",
        "date",
        "past-date",
        "word",
        "negative",
        "empty",
        "missing",
    ],
)
def test_parse_retry_after_forms(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_parse_retry_after_caps_wait() -> None:
    assert parse_retry_after("3600", now=NOW, cap=60.0) == 60.0


def test_retry_wait_prefers_retry_after() -> None:
    assert retry_wait(5, 1.5, base=0.5, maximum=30.0, rand=lambda: 1.0) == 1.5


def test_retry_wait_falls_back_to_backoff() -> None:
    assert retry_wait(2, None, base=0.5, maximum=30.0, rand=lambda: 1.0) == 1.0


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (501, False),
        (505, False),
        (400, False),
        (403, False),
        (404, False),
        (416, False),
    ],
)
def test_is_retryable_status_table(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_refused_connection_is_described() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/health"
    with pytest.raises(requests.ConnectionError) as caught:
        requests.get(url, timeout=2)

    assert describe_request_error(caught.value) == "connection refused"
    assert is_connection_refused(caught.value)
    assert is_retryable_exception(caught.value)


def test_tls_error_is_not_retryable() -> None:
    assert not is_retryable_exception(requests.exceptions.SSLError("bad cert"))


def test_read_timeout_is_retryable() -> None:
    error = requests.exceptions.ReadTimeout("read timed out")

    assert is_retryable_exception(error)
    assert describe_request_error(error) == "read timed out"
