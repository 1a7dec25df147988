"""Download of small release files over one plain keep-alive connection per thread.

Most of the Python work for a file of a few KiB is in the HTTP client:
``requests`` and ``urllib3`` prepare, send and parse each request with many
layers of Python. For a file whose manifest entry declares a size of
at most :data:`SMALL_FILE_BYTES` and a sha256, :class:`SmallFileFetcher` sends
the GET itself over the download thread's own connection. It reads the head
and the whole body, whose length is known, and hashes it in memory. Only bytes of
the declared size and hash are written, straight to ``DEST``: a file cut short
by a crash during that write fails the hash check of any later use, so no
``DEST.part`` is needed. The checks are those of
:class:`~codemate_setup.download_file.FileDownload`, with far less work per
file.

Only a clean exchange takes this path: a 200 whose ``Content-Length`` is the
declared size, without ``Content-Encoding``, whose body arrives complete and
has the declared hash. Anything else (another status, a wrong length, a
connection that breaks, wrong bytes) is handed to ``FileDownload`` together
with the response as received so far, replayed, so every check, retry,
backoff, ``Retry-After`` wait and message stays the one of the regular path,
and no request is sent twice. Its further attempts use the same connection.

The transport speaks plain HTTP/1.1 to the middleware's own host. It is not
used for https, through a proxy, or after the middleware answered a download
with a redirect or a ``Transfer-Encoding``: then every file takes the
``requests`` path as before.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import logging
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import requests
from requests.auth import _basic_auth_str
from requests.structures import CaseInsensitiveDict

from codemate_setup.client import USER_AGENT
from codemate_setup.download_file import FileDownload
from codemate_setup.errors import InstallError
from codemate_setup.filestore import VerifiedFile
from codemate_setup.redact import redact_url

if TYPE_CHECKING:
    from codemate_setup.client import MiddlewareClient
    from codemate_setup.download_run import DownloadRun, PlannedItem

logger = logging.getLogger(__name__)

# Largest declared size of a file fetched on this path. Its body is held in
# memory once, so this also bounds the memory of each download thread.
SMALL_FILE_BYTES = 256 * 1024

# Download threads when every file is small. Each thread waits on the server
# and on a file creation in the kernel, and each extra thread adds GIL
# hand-offs in the client and a handler thread in a Python middleware.
# NOTE: an estimate. On 2 cores under load, 2, 3, 4 and 8 threads measured
# within the noise of each other for 5,000 files of 4 KiB.
SMALL_FILE_WORKERS = 4

# Bytes asked of the socket per read.
RECV_BYTES = 64 * 1024

# Maximum size of a response head, status line and headers together.
MAX_HEAD_BYTES = 64 * 1024

# Whether socket timeouts are set in the kernel; see _set_timeout.
_KERNEL_TIMEOUTS = sys.platform == "linux" and struct.calcsize("l") == 8

# Statuses whose response has no body.
_NO_BODY_STATUSES = frozenset({204, 304})

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)

# Errors of a socket or of the response framing while a response is read.
_EXCHANGE_ERRORS = (OSError, http.client.HTTPException)


class _ProtocolError(http.client.HTTPException):
    """The server sent something that is not a valid HTTP/1.x response head."""


class _Unsupported(Exception):
    """The response needs a feature of ``requests`` that this transport lacks."""


class _Head:
    """The status line and headers of one response."""

    __slots__ = ("status", "headers", "keep_alive", "length")

    def __init__(
        self, status: int, headers: dict[str, str], keep_alive: bool, length: int | None
    ) -> None:
        self.status = status
        self.headers = headers
        self.keep_alive = keep_alive
        # Body bytes to read, or None when the body ends with the connection.
        self.length = length


def parse_head(data: bytes) -> _Head:
    """Parse a response head, without its final empty line.

    Header names are lower-cased; repeated headers are joined with ", ".

    Raises:
        http.client.HTTPException: If the head is not a valid HTTP/1.x
            response head or its body framing is ambiguous.
    """
    lines = data.split(b"\n")
    status_line = lines[0].rstrip(b"\r")
    version, _, rest = status_line.partition(b" ")
    code = rest[:3]
    well_formed = code.isdigit() and rest[3:4] in (b"", b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or not well_formed:
        raise _ProtocolError(f"invalid status line {status_line[:80]!r}")
    status = int(code)

    headers: dict[str, str] = {}
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b"\r" in line:
            raise _ProtocolError(f"invalid header line {line[:80]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        previous = headers.get(key)
        headers[key] = text if previous is None else f"{previous}, {text}"

    if "transfer-encoding" in headers:
        raise _Unsupported("a Transfer-Encoding")

    connection = headers.get("connection", "").lower()
    keep_alive = version == b"HTTP/1.1" and "close" not in connection
    length = _content_length(headers.get("content-length"))
    if status in _NO_BODY_STATUSES or 100 <= status < 200:
        length = 0
    if length is None:
        keep_alive = False
    return _Head(status, headers, keep_alive, length)


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    values = {part.strip() for part in value.split(",")}
    if len(values) != 1:
        raise _ProtocolError(f"conflicting Content-Length headers {value!r}")
    text = values.pop()
    if not (text.isascii() and text.isdigit()):
        raise _ProtocolError(f"invalid Content-Length {value!r}")
    return int(text)


class _Connection:
    """One keep-alive connection to the middleware, used by one thread at a time."""

    def __init__(self, transport: SmallFileTransport) -> None:
        self.transport = transport
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.reused = False
        self.interrupted = False

    def exchange(self, request: bytes) -> _Head:
        """Send one request and read the head of its response.

        The server may have closed a kept-alive connection meanwhile. Then
        the request is sent once more on a new connection, as long as no
        byte of a response arrived.

        Raises:
            requests.RequestException: If the request fails before a head.
            _Unsupported: If the head needs the ``requests`` path.
        """
        for _ in range(2):
            stale = self.sock is not None and self.reused
            if self.sock is None:
                self._connect()
            try:
                self._send(request)
                return self._read_head()
            except _Unsupported:
                self.close()
                raise
            except _EXCHANGE_ERRORS as e:
                received = bool(self.buffer)
                self.close()
                if stale and not received and not self.interrupted:
                    logger.debug("kept-alive connection closed by the server: %s", e)
                    continue
                raise _request_error(e) from e
        raise AssertionError("unreachable")

    def _connect(self) -> None:
        limits = self.transport.limits
        if self.interrupted:
            raise requests.exceptions.ConnectionError("the download was stopped")
        try:
            sock = socket.create_connection(
                (self.transport.host, self.transport.port),
                timeout=limits.connect_timeout,
            )
        except TimeoutError as e:
            raise requests.exceptions.ConnectTimeout(e) from e
        except OSError as e:
            raise requests.exceptions.ConnectionError(e) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _set_timeout(sock, limits.read_timeout)
        self.sock = sock
        self.buffer.clear()
        self.reused = False

    def _send(self, request: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(request)
        except BlockingIOError as e:
            raise TimeoutError("timed out") from e

    def _read_head(self) -> _Head:
        buffer = self.buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            skip = 4
            if end < 0:
                end = buffer.find(b"\n\n")
                skip = 2
            if end >= 0:
                head = parse_head(bytes(buffer[:end]))
                del buffer[: end + skip]
                if 100 <= head.status < 200:
                    continue
                return head
            if len(buffer) > MAX_HEAD_BYTES:
                raise _ProtocolError("response head too long")
            self._fill()

    def _fill(self) -> None:
        """Read what has arrived into the buffer.

        Raises:
            http.client.RemoteDisconnected: If the server closed the connection.
            OSError: If the read fails or times out.
        """
        chunk = self._recv(RECV_BYTES)
        if not chunk:
            raise http.client.RemoteDisconnected(
                "the server closed the connection without a complete response"
            )
        self.buffer += chunk

    def read_some(self, count: int) -> bytes:
        """Return up to ``count`` body bytes, b"" only at the end of the stream.

        Raises:
            OSError: If the read fails or times out.
        """
        buffer = self.buffer
        if not buffer:
            return self._recv(min(count, RECV_BYTES))
        data = bytes(buffer[:count])
        del buffer[:count]
        return data

    def _recv(self, count: int) -> bytes:
        sock = self.sock
        if sock is None:
            raise ConnectionAbortedError("the connection was closed")
        try:
            return sock.recv(count)
        except BlockingIOError as e:
            # The kernel's receive timeout expired (see _set_timeout).
            raise TimeoutError("timed out") from e

    def finish_response(self, head: _Head, complete: bool) -> None:
        """Keep the connection for the next request, or close it."""
        self.reused = True
        if not (complete and head.keep_alive) or self.buffer:
            # Bytes beyond the declared body mean the framing cannot be trusted.
            self.close()

    def interrupt(self) -> None:
        """Wake a read in progress and refuse further requests."""
        self.interrupted = True
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.buffer.clear()
        self.reused = False
        if sock is not None:
            sock.close()


def _set_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound each send and receive on ``sock`` to ``seconds``.

    On Linux the kernel enforces the bound (``SO_RCVTIMEO``, ``SO_SNDTIMEO``)
    on a blocking socket, which saves the ``poll`` that a Python socket
    timeout makes before every read and write. An expired bound then raises
    BlockingIOError. Elsewhere the socket gets a Python timeout.
    """
    if not _KERNEL_TIMEOUTS:
        sock.settimeout(seconds)
        return
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _request_error(error: BaseException) -> requests.RequestException:
    """Wrap a failure before the response head as ``requests`` would report it."""
    if isinstance(error, TimeoutError):
        return requests.exceptions.ReadTimeout(error)
    return requests.exceptions.ConnectionError(error)


class FastResponse:
    """A response read from a :class:`_Connection`, shaped like ``requests.Response``.

    It offers what :class:`FileDownload` uses: ``status_code``, ``headers``,
    ``url``, ``raw.read1``, ``raw.read``, ``raw.shutdown`` and ``close``. Body
    bytes and an error already received can be put back with :meth:`replay`.
    """

    def __init__(self, connection: _Connection, head: _Head, url: str) -> None:
        self.status_code = head.status
        self.url = url
        self.raw = self
        self.is_redirect = head.status in _REDIRECT_STATUSES and "location" in (
            head.headers
        )
        self._connection: _Connection | None = connection
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

    def read_body(self, limit: int) -> tuple[bytes, BaseException | None]:
        """Read the whole body, at most ``limit`` bytes, keeping any error.

        Returns:
            The bytes received and the exception that ended the read early,
            or None when the body arrived complete.
        """
        parts = []
        received = 0
        while received < limit:
            try:
                chunk = self.read1(limit - received)
            except _EXCHANGE_ERRORS as e:
                return b"".join(parts), e
            if not chunk:
                break
            parts.append(chunk)
            received += len(chunk)
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
        wanted = count
        while wanted > 0:
            chunk = self.read1(wanted)
            if not chunk:
                break
            parts.append(chunk)
            wanted -= len(chunk)
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
        self._connections: list[_Connection] = []
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

    def connection(self) -> _Connection:
        """Return the calling thread's connection, creating it on first use."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = _Connection(self)
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
        except _Unsupported as e:
            self.disable(f"the middleware answered a download with {e}")
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


class SmallFileFetcher:
    """Fetch small files of one ``download_all`` call on the lean path."""

    def __init__(self, run: DownloadRun, transport: SmallFileTransport) -> None:
        self.run = run
        self.transport = transport
        self.client = run.client
        self.limit = min(SMALL_FILE_BYTES, run.limits.chunk_bytes)
        self._lock = threading.Lock()
        self.fetched = 0
        self.handed_over = 0

    def accepts(self, planned: PlannedItem) -> bool:
        """Tell whether ``planned`` is a small, non-empty file with a declared hash."""
        item = planned.item
        size = item.size
        return (
            self.transport.disabled is None
            and item.sha256 is not None
            and size is not None
            and 0 < size <= self.limit
            and planned.part_bytes == 0
        )

    def fetch(self, planned: PlannedItem) -> None:
        """Download, verify and write one accepted file.

        Raises:
            The errors of :meth:`FileDownload.execute`.
        """
        run = self.run
        item = planned.item
        url = self.client.download_url(item.version, item.path)
        try:
            response = self.transport.open_stream(url)
        except requests.RequestException as e:
            run.raise_if_stopped()
            self._hand_over(planned, url, error=e)
            return

        if isinstance(response, FastResponse) and _is_clean(response, item.size):
            body, error = response.read_body(item.size)
            if error is None and len(body) == item.size:
                digest = hashlib.sha256(body).hexdigest()
                if digest == item.sha256.lower():
                    self._store(planned, body, digest)
                    return
            response.replay(body, error)
        run.raise_if_stopped()
        self._hand_over(planned, url, response=response)

    def _store(self, planned: PlannedItem, body: bytes, digest: str) -> None:
        run = self.run
        item = planned.item
        dest = item.dest
        try:
            run.make_folder(dest.parent)
            # The bytes are verified, so no part file is needed: a file cut
            # short by a crash fails the hash check of every later use.
            fd = os.open(dest, _WRITE_FLAGS, 0o666)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                info = os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise InstallError(
                f"writing the download of {item.path} of release {item.version} to "
                f"{dest.parent} failed: {e.strerror or e}; check free disk space and "
                "permissions"
            ) from e

        run.add_verified(
            dest, VerifiedFile(digest, info.st_size, info.st_mtime_ns, info.st_ino)
        )
        run.count_download(len(body))
        run.meter.add_file_bytes(len(body))
        with self._lock:
            self.fetched += 1

    def _hand_over(
        self,
        planned: PlannedItem,
        url: str,
        *,
        response: FastResponse | requests.Response | None = None,
        error: requests.RequestException | None = None,
    ) -> None:
        """Let ``FileDownload`` finish the file, starting from what was received."""
        with self._lock:
            self.handed_over += 1
        opener = _FirstThen(url, response, error, self.transport.open_stream)
        FileDownload(self.run, planned, open_stream=opener).execute()

    def log_summary(self) -> None:
        """Log, once per download call, how many files took which path."""
        if self.fetched or self.handed_over:
            logger.debug(
                "%d small files fetched whole, %d handed to the regular download",
                self.fetched,
                self.handed_over,
            )


def _is_clean(response: FastResponse, size: int) -> bool:
    encoding = response._head.headers.get("content-encoding", "").lower()
    return (
        response.status_code == 200
        and response._remaining == size
        and encoding in ("", "identity")
    )


class _FirstThen:
    """An ``open_stream`` that returns a response already received, then sends."""

    def __init__(
        self,
        url: str,
        response: Any,
        error: requests.RequestException | None,
        send: Callable[[str, Mapping[str, str] | None], Any],
    ) -> None:
        self.url = url
        self.response = response
        self.error = error
        self.send = send

    def __call__(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
        response, error = self.response, self.error
        self.response = self.error = None
        if url == self.url and not (headers or {}).get("Range"):
            if error is not None:
                raise error
            if response is not None:
                return response
        if response is not None:
            response.close()
        return self.send(url, headers)
