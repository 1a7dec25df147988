"""Retry decisions for middleware requests: what to retry and how long to wait.

Everything here is a pure function of its arguments (the random source and the
clock are parameters), so the policy is tested without a network.
"""

from __future__ import annotations

import errno
import http.client
import random
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import requests
import urllib3.exceptions

from codemate_setup.download_stall import HeadStalled

# HTTP statuses that mean "try again later": rate limiting and server errors.
# 501 Not Implemented and 505 HTTP Version Not Supported never change on retry.
RETRYABLE_STATUS_RANGE = range(500, 600)
PERMANENT_SERVER_STATUSES = frozenset({501, 505})

# A delay in seconds: digits with an optional decimal part.
_DELAY_SECONDS = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")


def is_retryable_status(status: int) -> bool:
    """Tell whether an HTTP status is worth retrying (429 and most 5xx)."""
    if status == 429:
        return True
    return status in RETRYABLE_STATUS_RANGE and status not in PERMANENT_SERVER_STATUSES


def backoff_delay(
    attempt: int,
    base: float,
    maximum: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Compute the wait before retry number ``attempt`` with full jitter.

    The delay is uniform in ``[0, min(maximum, base * 2**(attempt - 1))]``,
    which spreads clients that failed together over the whole window.

    Args:
        attempt: The retry about to happen, counted from 1.
        base: The window of the first retry, in seconds.
        maximum: The largest window, in seconds.
        rand: A source of floats in ``[0, 1)``.

    Returns:
        The delay in seconds.
    """
    exponent = min(max(attempt - 1, 0), 62)
    window = min(maximum, base * (2**exponent))
    return max(0.0, window * rand())


def parse_retry_after(
    value: str | None, now: datetime | None = None, cap: float | None = None
) -> float | None:
    """Convert a ``Retry-After`` header into seconds to wait.

    The header contains either a number of seconds or an HTTP date. A date in the
    past means "retry now". Decimal seconds such as ``0.5`` are accepted too,
    although RFC 9110 allows only whole seconds.

    Args:
        value: The raw header, or None when absent.
        now: The current time, for HTTP dates; defaults to the clock.
        cap: The largest wait returned, in seconds.

    Returns:
        Seconds to wait, or None when the header is missing or invalid.
    """
    if value is None:
        return None

    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        seconds: float | None = float(text)
    else:
        seconds = _seconds_until_http_date(text, now)

    if seconds is None:
        return None

    if cap is not None:
        seconds = min(seconds, cap)
    return max(0.0, seconds)


def _seconds_until_http_date(text: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None

    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return (when - current).total_seconds()


def retry_wait(
    attempt: int,
    retry_after: float | None,
    base: float,
    maximum: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Choose the wait before a retry: the server's ``Retry-After`` if it gave one.

    Args:
        attempt: The retry about to happen, counted from 1.
        retry_after: Seconds from :func:`parse_retry_after`, already capped.
        base: Backoff window of the first retry, in seconds.
        maximum: Largest backoff window, in seconds.
        rand: A source of floats in ``[0, 1)``.

    Returns:
        The delay in seconds.
    """
    if retry_after is not None:
        return retry_after
    return backoff_delay(attempt, base, maximum, rand)


def is_retryable_exception(error: BaseException) -> bool:
    """Tell whether a failed request is worth retrying.

    Connection failures, resets, dropped bodies and timeouts are retried. TLS
    failures (a certificate that does not verify will not verify next time),
    invalid URLs and too many redirects are not.
    """
    if isinstance(error, requests.exceptions.SSLError):
        return False
    if isinstance(error, (requests.exceptions.InvalidURL, requests.TooManyRedirects)):
        return False
    return isinstance(
        error,
        (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            urllib3.exceptions.HTTPError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
            socket.timeout,
        ),
    )


def is_connection_refused(error: BaseException) -> bool:
    """Tell whether a request failed because nothing listens on the port."""
    return any(
        isinstance(cause, ConnectionRefusedError)
        or getattr(cause, "errno", None) == errno.ECONNREFUSED
        for cause in _causes(error)
    )


def describe_request_error(error: BaseException) -> str:
    """Name the cause of a failed request in a few plain words.

    Args:
        error: An exception raised by ``requests`` or ``urllib3``.

    Returns:
        A phrase such as "connection refused" or "read timed out".
    """
    causes = list(_causes(error))
    if any(isinstance(cause, ssl.SSLCertVerificationError) for cause in causes):
        return "TLS certificate verification failed"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if is_connection_refused(error):
        return "connection refused"
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    stalled = next((c for c in causes if isinstance(c, HeadStalled)), None)
    if stalled is not None:
        return str(stalled)
    if any(isinstance(cause, _READ_TIMEOUTS) for cause in causes):
        return "read timed out"
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return "host name not found"
    if any(isinstance(cause, ConnectionResetError) for cause in causes):
        return "connection reset by the server"
    if any(isinstance(cause, _CUT_OFF_ERRORS) for cause in causes):
        return CUT_OFF_REASON
    if isinstance(error, requests.TooManyRedirects):
        return "too many redirects"
    return "request failed"


# The description of a body that ended before its declared length.
CUT_OFF_REASON = "connection closed before the response was complete"

# Exceptions raised when the server sends nothing for the whole read timeout.
_READ_TIMEOUTS = (
    requests.exceptions.ReadTimeout,
    urllib3.exceptions.ReadTimeoutError,
    socket.timeout,
)

# Exceptions raised when a connection closes before the whole body arrived.
_CUT_OFF_ERRORS = (
    urllib3.exceptions.ProtocolError,
    requests.exceptions.ChunkedEncodingError,
    http.client.IncompleteRead,
    http.client.RemoteDisconnected,
)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """Yield the exception and everything it wraps, each once."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current

        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
