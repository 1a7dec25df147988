"""Plain HTTP/1.1 over one keep-alive socket: response heads and body bytes.

:class:`Connection` sends a request that the transport of
:mod:`codemate_setup.small_transport` built. It reads the head of the response
with :func:`parse_head` and then returns the body bytes as they arrive. A
failure before the head is raised as the ``requests`` exception that the
regular download path would raise. A head that needs a feature of
``requests``, such as a ``Transfer-Encoding``, raises :class:`UnsupportedResponse`.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import struct
import sys
from typing import TYPE_CHECKING

import requests

from codemate_setup.download_stall import HeadStalled, StallGuard

if TYPE_CHECKING:
    from codemate_setup.small_transport import SmallFileTransport

logger = logging.getLogger(__name__)

# Bytes asked of the socket per read.
RECV_BYTES = 64 * 1024

# Maximum size of a response head, status line and headers together.
MAX_HEAD_BYTES = 64 * 1024

# Whether socket timeouts are set in the kernel; see _set_timeout.
_KERNEL_TIMEOUTS = sys.platform == "linux" and struct.calcsize("l") == 8

# Statuses whose response has no body.
_NO_BODY_STATUSES = frozenset({204, 304})


# Errors of a socket or of the response framing while a response is read.
EXCHANGE_ERRORS = (OSError, http.client.HTTPException)


class _ProtocolError(http.client.HTTPException):
    """The server sent something that is not a valid HTTP/1.x response head."""


class UnsupportedResponse(Exception):
    """The response needs a feature of ``requests`` that this transport lacks."""


class ResponseHead:
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


def parse_head(data: bytes) -> ResponseHead:
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
        raise UnsupportedResponse("a Transfer-Encoding")

    connection = headers.get("connection", "").lower()
    keep_alive = version == b"HTTP/1.1" and "close" not in connection
    length = _content_length(headers.get("content-length"))
    if status in _NO_BODY_STATUSES or 100 <= status < 200:
        length = 0
    if length is None:
        keep_alive = False
    return ResponseHead(status, headers, keep_alive, length)


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


class Connection:
    """One keep-alive connection to the middleware, used by one thread at a time."""

    def __init__(self, transport: SmallFileTransport) -> None:
        self.transport = transport
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.reused = False
        self.interrupted = False

    def exchange(self, request: bytes) -> ResponseHead:
        """Send one request and read the head of its response.

        The server may have closed a kept-alive connection meanwhile. Then
        the request is sent once more on a new connection, as long as no
        byte of a response arrived.

        Raises:
            requests.RequestException: If the request fails before a head.
            UnsupportedResponse: If the head needs the ``requests`` path.
        """
        for _ in range(2):
            if self.sock is not None and self.reused and self._has_unread_bytes():
                # Bytes that no request asked for would be read as the next
                # response, so this connection is out of step with the server.
                logger.debug("unexpected bytes on an idle connection; reconnecting")
                self.close()
            stale = self.sock is not None and self.reused
            if self.sock is None:
                self._connect()
            try:
                self._send(request)
                return self._read_head()
            except UnsupportedResponse:
                self.close()
                raise
            except _ProtocolError as e:
                # requests may read heads that this parser rejects.
                self.close()
                raise UnsupportedResponse(
                    f"a response head it could not parse ({e})"
                ) from e
            except EXCHANGE_ERRORS as e:
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

    def _has_unread_bytes(self) -> bool:
        peek_flags = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)
        if self.buffer or not getattr(socket, "MSG_DONTWAIT", 0):
            return bool(self.buffer)
        assert self.sock is not None
        try:
            # An idle connection has nothing to read, and b"" means closed.
            self.sock.recv(1, peek_flags)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return True

    def _read_head(self) -> ResponseHead:
        buffer = self.buffer
        limits = self.transport.limits
        # The read timeout bounds each wait only, so without this floor a head
        # sent a byte at a time would keep the request waiting for days.
        guard = StallGuard(limits.low_speed_bytes, limits.low_speed_seconds)
        stalled: str | None = None
        while True:
            # The head ends at the first empty line, with or without CRs.
            ends = [
                (index, skip)
                for index, skip in (
                    (buffer.find(b"\r\n\r\n"), 4),
                    (buffer.find(b"\n\n"), 2),
                )
                if index >= 0
            ]
            end, skip = min(ends) if ends else (-1, 0)
            if end >= 0:
                head = parse_head(bytes(buffer[:end]))
                del buffer[: end + skip]
                if 100 <= head.status < 200:
                    continue
                return head
            if len(buffer) > MAX_HEAD_BYTES:
                raise _ProtocolError("response head too long")
            if stalled is not None:
                # Only a head still incomplete after the slow window counts.
                raise HeadStalled(f"{stalled}, while the response head was read")
            stalled = guard.add(self._fill())

    def _fill(self) -> int:
        """Read what has arrived into the buffer and return its length.

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
        return len(chunk)

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

    def finish_response(self, head: ResponseHead, complete: bool) -> None:
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
