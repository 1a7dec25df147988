"""JSON requests of the middleware client: retries, deadline, cancel, size bound.

:class:`JsonFetcher` sends each JSON request of a
:class:`~codemate_setup.client.MiddlewareClient` over the client's session.
It retries timeouts, dropped connections, 5xx and 429 responses, stops an
attempt at its deadline or when the cancel event is set, and bounds the body
size.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import requests
from packaging.version import Version

from codemate_setup.config import Limits
from codemate_setup.download_run import shutdown_response_socket
from codemate_setup.errors import MiddlewareError, SetupCancelledError
from codemate_setup.head_watch import interrupt_heads, interruptible
from codemate_setup.redact import redact_text, redact_url
from codemate_setup.retry import (
    describe_request_error,
    is_connection_refused,
    is_retryable_exception,
    is_retryable_status,
    parse_retry_after,
    retry_wait,
)

# Requests and retries log under the client's name, which log filters select.
logger = logging.getLogger("codemate_setup.client")

# Seconds between checks of the cancel event and the deadline of a JSON request.
WATCH_SECONDS = 0.2

# Bytes read per iteration when streaming a JSON document.
JSON_CHUNK_BYTES = 64 * 1024


class JsonFetcher:
    """Fetcher of JSON documents over a middleware client's session.

    Args:
        session: The client's session.
        limits: Bounds on sizes, timeouts and retries.
        timeout: The ``(connect, read)`` timeouts in seconds.
        display_url: The middleware URL without credentials, for messages.
        cancel: When set, a request in flight stops within about
            :data:`WATCH_SECONDS` and raises SetupCancelledError.
        closed: Set when the client closes, so no further retry starts.
    """

    def __init__(
        self,
        session: requests.Session,
        *,
        limits: Limits,
        timeout: tuple[float, float],
        display_url: str,
        cancel: threading.Event | None,
        closed: threading.Event,
    ) -> None:
        self.session = session
        self.limits = limits
        self.timeout = timeout
        self.display_url = display_url
        self._cancel = cancel
        self._closed = closed

    def fetch(
        self,
        url: str,
        *,
        limit: int,
        description: str,
        version: Version | None = None,
        error_class: type[Exception] = MiddlewareError,
    ) -> Any:
        """GET a JSON document with retries, a size bound and clear errors.

        Args:
            url: The absolute URL of the document.
            limit: The maximum body size in bytes.
            description: What the document is, for messages and logs.
            version: The release the document belongs to, so that a 404
                names it as not found.
            error_class: The error for a body that is too large or not JSON.
        """
        body = self._get_bounded(
            url,
            limit=limit,
            description=description,
            version=version,
            error_class=error_class,
        )

        try:
            return json.loads(body)
        except (ValueError, RecursionError) as e:
            raise error_class(
                f"the {description} from the middleware at {self.display_url} is not "
                f"valid JSON: {e}; check that the middleware serves this API"
            ) from e

    def _get_bounded(
        self,
        url: str,
        *,
        limit: int,
        description: str,
        version: Version | None,
        error_class: type[Exception],
    ) -> bytes:
        """GET ``url`` and return its body, retrying what is worth retrying."""
        attempt = 0
        while True:
            try:
                return self._get_once(
                    url,
                    limit=limit,
                    description=description,
                    version=version,
                    error_class=error_class,
                )
            except _RetryableResponse as e:
                cause: Exception = e
                reason = e.reason
                retry_after = e.retry_after
                final_error = MiddlewareError(
                    f"the middleware at {self.display_url} failed to send the "
                    f"{description}: {reason} after {attempt + 1} attempts; check the "
                    "middleware's log and try again later"
                )
            except requests.RequestException as e:
                cause = e
                reason = describe_request_error(e)
                retry_after = None
                final_error = self._unreachable_error(e)
                if is_connection_refused(e) or not is_retryable_exception(e):
                    raise final_error from e

            if attempt >= self.limits.max_retries or self._closed.is_set():
                raise final_error from cause

            attempt += 1
            delay = retry_wait(
                attempt,
                retry_after,
                self.limits.backoff_base,
                self.limits.backoff_max,
            )
            logger.info(
                "retrying %s from %s (attempt %d of %d) in %.2f s: %s",
                description,
                redact_url(url),
                attempt + 1,
                self.limits.max_retries + 1,
                delay,
                reason,
            )
            time.sleep(delay)

    def _get_once(
        self,
        url: str,
        *,
        limit: int,
        description: str,
        version: Version | None,
        error_class: type[Exception],
    ) -> bytes:
        """Run one attempt on a helper thread, bounded in time and cancellable.

        The read timeout bounds each socket read only, so a server that sends
        a byte now and then would hold a plain request forever.
        """
        logger.debug("GET %s", redact_url(url))
        call = _JsonCall()
        worker = threading.Thread(
            target=self._run_call,
            args=(call, url),
            kwargs={
                "limit": limit,
                "description": description,
                "version": version,
                "error_class": error_class,
            },
            name="middleware-request",
            daemon=True,
        )
        worker.start()

        deadline = time.monotonic() + self.limits.json_request_seconds
        while worker.is_alive():
            worker.join(WATCH_SECONDS)
            if not worker.is_alive():
                break
            if self._cancel is not None and self._cancel.is_set():
                call.abandon()
                raise SetupCancelledError(
                    f"the request for the {description} was cancelled"
                )
            if time.monotonic() >= deadline:
                call.abandon()
                raise MiddlewareError(
                    f"the middleware at {self.display_url} timed out: the "
                    f"{description} took longer than "
                    f"{self.limits.json_request_seconds:g} s to arrive; check the "
                    "middleware and the network, then try again"
                )

        if call.error is not None:
            raise call.error
        return call.body

    def _run_call(
        self,
        call: _JsonCall,
        url: str,
        *,
        limit: int,
        description: str,
        version: Version | None,
        error_class: type[Exception],
    ) -> None:
        try:
            with (
                interruptible(call.stop),
                self.session.get(url, stream=True, timeout=self.timeout) as response,
            ):
                call.attach(response)
                self._check_status(response, description=description, version=version)
                call.body = self._read_body(
                    response,
                    limit=limit,
                    description=description,
                    error_class=error_class,
                )
        except BaseException as e:  # noqa: BLE001 - raised again by _get_once
            call.error = e

    def _check_status(
        self, response: requests.Response, *, description: str, version: Version | None
    ) -> None:
        status = response.status_code
        if status == 200:
            return

        if is_retryable_status(status):
            raise _RetryableResponse(
                f"HTTP {status}",
                parse_retry_after(
                    response.headers.get("Retry-After"),
                    cap=self.limits.max_retry_after,
                ),
            )

        if status == 404 and version is not None:
            raise MiddlewareError(
                f"release {version} not found on the middleware at "
                f"{self.display_url}; run `update.py --list` to see the available "
                "versions"
            )

        raise MiddlewareError(
            f"the middleware at {self.display_url} returned HTTP {status} for the "
            f"request for the {description} ({redact_url(response.url)}); check "
            "--middleware-url and --repo"
        )

    def _read_body(
        self,
        response: requests.Response,
        *,
        limit: int,
        description: str,
        error_class: type[Exception],
    ) -> bytes:
        declared = response.headers.get("Content-Length", "")
        too_large = (
            f"the {description} from the middleware at {self.display_url} must be "
            f"at most {limit} bytes"
        )
        if declared.isdigit() and int(declared) > limit:
            raise error_class(f"{too_large}, but it declares {declared} bytes")

        received = bytearray()
        try:
            for chunk in response.iter_content(JSON_CHUNK_BYTES):
                received += chunk
                if len(received) > limit:
                    raise error_class(
                        f"{too_large}, but it sent more, so the transfer was stopped"
                    )
        except requests.RequestException as e:
            if not is_retryable_exception(e):
                raise
            raise _RetryableResponse(describe_request_error(e), None) from e

        return bytes(received)

    def _unreachable_error(self, error: BaseException) -> MiddlewareError:
        reason = describe_request_error(error)
        if isinstance(error, requests.exceptions.SSLError):
            return MiddlewareError(
                f"cannot reach the middleware at {self.display_url}: {reason} "
                f"({redact_text(str(error))}); install the server's CA certificate "
                "or point REQUESTS_CA_BUNDLE at it"
            )
        return MiddlewareError(
            f"cannot reach the middleware at {self.display_url}: {reason}; check "
            "that it is running or pass --middleware-url"
        )


class _JsonCall:
    """The outcome of one JSON request attempt running on a helper thread."""

    def __init__(self) -> None:
        self.body = b""
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self._abandoned = False
        # Set by abandon(), which then wakes the attempt waiting for its head.
        self.stop = threading.Event()

    def attach(self, response: requests.Response) -> None:
        """Record the response, shutting it down at once if already abandoned."""
        with self._lock:
            self._response = response
            abandoned = self._abandoned
        if abandoned:
            shutdown_response_socket(response)

    def abandon(self) -> None:
        """Stop the attempt: wake a body read or the wait for the response head.

        A thread still connecting cannot be woken. It is a daemon thread, so
        it ends with the connect timeout or the process.
        """
        self.stop.set()
        interrupt_heads(self.stop)
        with self._lock:
            self._abandoned = True
            response = self._response
        if response is not None:
            shutdown_response_socket(response)


class _RetryableResponse(Exception):
    """A response worth retrying: a 5xx, a 429 or a body cut off mid-way."""

    def __init__(self, reason: str, retry_after: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
