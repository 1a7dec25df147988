"""The ``open_stream`` of small files: plain HTTP/1.1, one connection per thread.

:class:`SmallFileTransport` builds each GET and sends it on the calling
thread's own connection of :mod:`codemate_setup.http_wire`. The response is a
:class:`FastResponse`, which offers what
:class:`~codemate_setup.download_file.FileDownload` uses of
``requests.Response``.

The transport speaks plain HTTP/1.1 to the middleware's own host. It is not
used for https, through a proxy, or after the middleware replied to a download
with a redirect or a ``Transfer-Encoding``: then every file takes the
``requests`` path as before.
"""

from __future__ import annotations

import functools
import http.client
import logging
import socket
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import requests
from requests.auth import _basic_auth_str
from requests.structures import CaseInsensitiveDict

from codemate_setup.client import USER_AGENT
from codemate_setup.download_stall import StallGuard
from codemate_setup.http_wire import (
    EXCHANGE_ERRORS,
    Connection,
    ResponseHead,
    UnsupportedResponse,
)
from codemate_setup.redact import redact_url

if TYPE_CHECKING:
    from codemate_setup.client import MiddlewareClient

logger = logging.getLogger(__name__)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class FastResponse:
    """A response read from a :class:`Connection`, shaped like ``requests.Response``.

    It offers what :class:`FileDownload` uses: ``status_code``, ``headers``,
    ``url``, ``raw.read1``, ``raw.read``, ``raw.shutdown`` and ``close``. Body
    bytes and an error already received can be put back with :meth:`replay`.
    """

    def __init__(self, connection: Connection, head: ResponseHead, url: str) -> None:
        self.status_code = head.status
        self.url = url
        self.raw = self
        self.is_redirect = head.status in _REDIRECT_STATUSES and "location" in (
            head.headers
        )
        self._connection: Connection | None = connection
        self._head = head
        self._remaining = head.length
        self._replayed = b""
        self._error: BaseException | None = None
        if self._remaining == 0:
            self._finish(complete=True)

    @functools.cached_property
    def headers(self) -> CaseInsensitiveDict[str]:
        """The response headers, looked up without regard to case."""
        return CaseInsensitiveDict(self._head.headers)

    def read_body(
        self, limit: int, guard: StallGuard | None = None
    ) -> tuple[bytes, BaseException | None]:
        """Read the whole body, at most ``limit`` bytes, keeping any error.

        Args:
            limit: Bytes to read at most.
            guard: Stops the read early, without an error, when the body
                arrives too slowly.

        Returns:
            The bytes received and the exception that ended the read early,
            or None when the body arrived complete or the guard stopped it.
        """
        parts = []
        received = 0
        while received < limit:
            try:
                chunk = self.read1(limit - received)
            except EXCHANGE_ERRORS as e:
                return b"".join(parts), e
            if not chunk:
                break
            parts.append(chunk)
            received += len(chunk)
            if guard is not None and guard.add(len(chunk)) is not None:
                break
        return b"".join(parts), None

    def replay(self, data: bytes, error: BaseException | None) -> None:
        """Serve ``data`` again, then raise ``error`` if there was one."""
        self._replayed = data
        self._error = error

    def read1(self, count: int, decode_content: bool = False) -> bytes:
        """Return up to ``count`` body bytes; b"" at the end of the body."""
        if self._replayed:
            data = self._replayed[:count]
            self._replayed = self._replayed[count:]
            return data
        if self._error is not None:
            error, self._error = self._error, None
            raise error

        connection = self._connection
        remaining = self._remaining
        if connection is None or count <= 0 or remaining == 0:
            return b""
        if remaining is not None:
            count = min(count, remaining)
        data = connection.read_some(count)
        if not data:
            if remaining is None:
                self._finish(complete=True)
                return b""
            self._finish(complete=False)
            raise http.client.IncompleteRead(b"", remaining)
        if remaining is not None:
            self._remaining = remaining - len(data)
            if self._remaining == 0:
                self._finish(complete=True)
        return data

    def read(self, count: int, decode_content: bool = False) -> bytes:
        """Return ``count`` body bytes, fewer only at the end of the body."""
        parts = []
        remaining = count
        while remaining > 0:
            chunk = self.read1(remaining)
            if not chunk:
                break
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)

    def shutdown(self) -> None:
        """Wake a read in progress, as ``urllib3``'s ``shutdown`` does."""
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    def _finish(self, *, complete: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finish_response(self._head, complete)

    def close(self) -> None:
        """Release the connection: kept when the body was read to the end."""
        self._finish(complete=self._remaining == 0)

    def __enter__(self) -> FastResponse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SmallFileTransport:
    """Plain HTTP/1.1 requests to the middleware, one connection per thread."""

    def __init__(self, client: MiddlewareClient) -> None:
        parts = urlsplit(client.base_url)
        self.client = client
        self.limits = client.limits
        self.host = parts.hostname or ""
        self.port = parts.port or 80
        self.origin = f"{parts.scheme}://{parts.netloc}"
        host_header = parts.netloc.rpartition("@")[2]
        lines = [
            f"Host: {host_header}",
            f"User-Agent: {USER_AGENT}",
            "Accept-Encoding: identity",
        ]
        credentials = _credentials(client)
        if credentials is not None:
            lines.append(f"Authorization: {_basic_auth_str(*credentials)}")
        self._headers = "".join(line + "\r\n" for line in lines)
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self.disabled: str | None = None

    @classmethod
    def for_client(cls, client: MiddlewareClient) -> SmallFileTransport | None:
        """Return a transport for the client's middleware, or None for ``requests``.

        Plain http without a proxy qualifies; https and proxies stay with
        ``requests``, which handles TLS and proxy settings.
        """
        parts = urlsplit(client.base_url)
        if parts.scheme != "http" or not parts.hostname:
            return None
        proxies = client.session_proxies()
        if requests.utils.select_proxy(client.base_url, proxies) is not None:
            return None
        try:
            return cls(client)
        except (ValueError, UnicodeError) as e:
            logger.debug("small files take the regular path: %s", e)
            return None

    def connection(self) -> Connection:
        """Return the calling thread's connection, creating it on first use."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = Connection(self)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def request_bytes(self, url: str, headers: Mapping[str, str] | None) -> bytes:
        """Build a GET for ``url``, a URL of the middleware.

        Raises:
            requests.exceptions.InvalidHeader: If a header has a line break.
            ValueError: If the URL is not on the middleware or not ASCII.
        """
        if not url.startswith(self.origin):
            raise ValueError(f"{redact_url(url)} is not on {self.origin}")
        target = url[len(self.origin) :] or "/"
        if target[0] != "/":
            raise ValueError(f"{redact_url(url)} is not on {self.origin}")
        extra = ""
        for name, value in (headers or {}).items():
            if name.lower() == "accept-encoding":
                continue
            if any(mark in name + value for mark in "\r\n"):
                raise requests.exceptions.InvalidHeader(
                    f"invalid value in the request header {name}"
                )
            extra += f"{name}: {value}\r\n"
        return f"GET {target} HTTP/1.1\r\n{self._headers}{extra}\r\n".encode("ascii")

    def open_stream(
        self, url: str, headers: Mapping[str, str] | None = None
    ) -> FastResponse | requests.Response:
        """Send a GET on this thread's connection and return the unread response.

        Behaves as :meth:`MiddlewareClient.open_stream`: redirects are checked
        by the client and then followed by ``requests``, as is any response
        this transport cannot read.

        Raises:
            requests.RequestException: If the request fails before a response.
            MiddlewareError: If the middleware redirects to plain http.
        """
        if self.disabled is not None:
            return self.client.open_stream(url, headers)
        try:
            request = self.request_bytes(url, headers)
        except (ValueError, UnicodeError) as e:
            if isinstance(e, requests.RequestException):
                raise
            return self.client.open_stream(url, headers)

        connection = self.connection()
        try:
            head = connection.exchange(request)
        except UnsupportedResponse as e:
            self.disable(f"the middleware replied to a download with {e}")
            return self.client.open_stream(url, headers)

        response = FastResponse(connection, head, url)
        if response.is_redirect:
            response.close()
            self.client.check_redirect(response)
            self.disable("the middleware redirects downloads")
            return self.client.open_stream(url, headers)
        return response

    def disable(self, reason: str) -> None:
        """Send every further request through ``requests``."""
        if self.disabled is None:
            self.disabled = reason
            logger.info("small files take the regular download path: %s", reason)

    def interrupt(self) -> None:
        """Wake every read in progress and refuse further requests."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.interrupt()

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


def _credentials(client: MiddlewareClient) -> tuple[str, str] | None:
    """Return the credentials ``requests`` would send: from the URL, else ``.netrc``."""
    parts = urlsplit(client.base_url)
    if parts.username is not None or parts.password is not None:
        return unquote(parts.username or ""), unquote(parts.password or "")
    return client.netrc_auth()
