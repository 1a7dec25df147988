"""The body of a download response, moved into the part file a chunk at a time.

:class:`ReadBody` reads each chunk into a ``bytes`` object, which the download
writes to the part file and hands to the hasher. On Linux, a plain HTTP body of
known length goes through :class:`SplicedBody` instead: ``os.splice`` moves its
bytes from the socket through a pipe into the part file inside the kernel, and
the hasher reads them back from the file's pages. That saves one of the two
copies of every byte, and the ``bytes`` objects.

Both offer :meth:`receive`, which takes the next chunk off the connection, and
:meth:`store`, which writes it at the end of the part file and passes it to the
hasher. A chunk received but not stored is dropped, as a stalled chunk is.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import select
import socket
import ssl
import sys
from typing import Any, BinaryIO, Protocol

import requests

from codemate_setup.download_hash import BackgroundHasher

logger = logging.getLogger(__name__)

SPLICE_SUPPORTED = sys.platform == "linux" and hasattr(os, "splice")

# Pipe size requested: Linux's default /proc/sys/fs/pipe-max-size, the largest
# that an unprivileged process gets. The pipe keeps 64 KiB if it is rejected.
PIPE_BYTES = 1024 * 1024

# Errors of a first splice that mean the kernel cannot splice these two
# files, so the body is read as usual instead.
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF)


class SpliceUnsupported(Exception):
    """The kernel cannot splice this socket, and no byte was taken off it."""


class Body(Protocol):
    """The part of a response body not yet moved into the part file."""

    def receive(self, count: int) -> int:
        """Take up to ``count`` bytes off the connection and return how many.

        Returns 0 at the end of the body.
        """

    def store(self, handle: BinaryIO, offset: int, hasher: BackgroundHasher) -> None:
        """Write the received bytes to ``handle`` at ``offset`` and hash them."""

    def has_more(self) -> bool:
        """Tell whether a byte follows the declared end of the body."""

    def close(self) -> None:
        """Release what the body holds, such as its pipe."""


class ReadBody:
    """A body read into ``bytes`` objects through ``requests``.

    ``read1`` (urllib3 2.3 and later) returns whatever has arrived, up to N
    bytes, so progress and resume points follow the network. The older
    ``read`` waits until N bytes arrive or the body ends.
    """

    def __init__(self, response: requests.Response) -> None:
        raw = response.raw
        read1 = getattr(raw, "read1", None)
        if read1 is not None:
            self._read = lambda count: read1(count, decode_content=False)
        else:
            self._read = lambda count: raw.read(count, decode_content=False)
        self._chunk = b""

    def receive(self, count: int) -> int:
        self._chunk = self._read(count)
        return len(self._chunk)

    def store(self, handle: BinaryIO, offset: int, hasher: BackgroundHasher) -> None:
        chunk, self._chunk = self._chunk, b""
        hasher.update(chunk)
        handle.write(chunk)

    def has_more(self) -> bool:
        # A body delimited by Content-Length ends here anyway, so this read
        # returns at once.
        return bool(self._read(1))

    def close(self) -> None:
        self._chunk = b""


class SplicedBody:
    """A plain HTTP body moved by the kernel from its socket to the part file.

    Only the bytes after those that ``requests`` already buffered are spliced,
    so the first chunk of the body must be read through :class:`ReadBody`.
    The body must have a known length: it is never read past it, so a byte
    beyond cannot be seen, and the connection is closed with the response
    rather than reused.
    """

    def __init__(self, sock: socket.socket, region_fd: int) -> None:
        self._sock = sock
        self._region_fd = region_fd
        self._timeout = sock.gettimeout()
        self._pipe_read, self._pipe_write = os.pipe2(os.O_CLOEXEC)
        import fcntl  # exists on POSIX only, and this class runs on Linux only

        try:
            fcntl.fcntl(self._pipe_write, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError as e:
            logger.debug("the pipe keeps its default size: %s", e)
        self._in_pipe = 0
        self._spliced = False
        self._copy_to_file = False

    def receive(self, count: int) -> int:
        """Move up to ``count`` bytes from the socket into the pipe.

        Takes what has arrived, waiting up to the socket's timeout for the
        first byte.

        Raises:
            SpliceUnsupported: If the first splice shows that the kernel
                cannot splice this socket.
            TimeoutError: If no byte arrives for the socket's timeout.
            OSError: If the connection fails, such as when a halt shuts it down.
        """
        received = 0
        while received < count:
            try:
                moved = os.splice(
                    self._sock.fileno(),
                    self._pipe_write,
                    count - received,
                    flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK,
                )
            except BlockingIOError:
                if received:
                    break
                self._wait_readable()
                continue
            except OSError as e:
                if not self._spliced and e.errno in _UNSUPPORTED:
                    raise SpliceUnsupported(str(e)) from e
                raise
            self._spliced = True
            if moved == 0:
                break
            received += moved
        self._in_pipe = received
        return received

    def store(self, handle: BinaryIO, offset: int, hasher: BackgroundHasher) -> None:
        """Move the received bytes from the pipe into the file at ``offset``.

        Where the file system rejects a splice, this chunk and every later
        one are written with ``pwrite()``.

        Raises:
            OSError: If writing the file fails, such as on a full disk.
        """
        count, self._in_pipe = self._in_pipe, 0
        fd = handle.fileno()
        stored = 0
        while stored < count and not self._copy_to_file:
            try:
                moved = os.splice(
                    self._pipe_read,
                    fd,
                    count - stored,
                    offset_dst=offset + stored,
                    flags=os.SPLICE_F_MOVE,
                )
            except OSError as e:
                if e.errno not in _UNSUPPORTED or e.errno == errno.EBADF:
                    raise
                logger.debug("writing spliced bytes with write(): %s", e)
                self._copy_to_file = True
                break
            if moved == 0:
                raise OSError(errno.EIO, "the pipe ended before its bytes were stored")
            stored += moved
        if stored:
            hasher.update_file(self._region_fd, offset, stored)
        if stored < count:
            data = _read_exactly(self._pipe_read, count - stored)
            _write_exactly(fd, data, offset + stored)
            hasher.update(data)

    def has_more(self) -> bool:
        return False

    def close(self) -> None:
        os.close(self._pipe_read)
        os.close(self._pipe_write)

    def _wait_readable(self) -> None:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        timeout_ms = None if self._timeout is None else self._timeout * 1000
        if not poller.poll(timeout_ms):
            raise TimeoutError("timed out")


def _read_exactly(fd: int, count: int) -> bytes:
    parts = []
    while count > 0:
        data = os.read(fd, count)
        if not data:
            raise OSError(errno.EIO, "the pipe ended before its bytes were stored")
        parts.append(data)
        count -= len(data)
    return b"".join(parts)


def _write_exactly(fd: int, data: bytes, offset: int) -> None:
    # pwrite() may write fewer bytes than given, such as on a nearly full disk,
    # and the hasher gets all of them, so the rest must reach the file too.
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written == 0:
            raise OSError(
                errno.EIO, f"writing the file at byte {offset} stored 0 bytes"
            )
        view = view[written:]
        offset += written


def splice_socket(response: requests.Response, remaining: int) -> socket.socket | None:
    """Return the socket of a body that the kernel can move, or None.

    That is a plain (not TLS) connection whose body has exactly ``remaining``
    bytes left, declared by Content-Length, with nothing buffered above the
    socket: ``requests`` has read at least one chunk of ``io.DEFAULT_BUFFER_SIZE``
    or more since the head, each with one ``read1``, so its buffer is empty.
    """
    if not SPLICE_SUPPORTED:
        return None
    raw: Any = response.raw
    # ReadBody uses read1 where urllib3 has it, and only read1 makes at most
    # one read of the buffered reader, which leaves its buffer empty.
    if not hasattr(raw, "read1"):
        return None
    if (
        getattr(raw, "chunked", True)
        or getattr(raw, "length_remaining", None) != remaining
    ):
        return None
    # NOTE: http.client drops the connection's socket once a response has
    # Connection: close (or is HTTP/1.0), so such a body is always read.
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if type(sock) is not socket.socket or isinstance(sock, ssl.SSLSocket):
        return None
    return sock


def can_read_one_chunk(chunk_bytes: int) -> bool:
    """Tell whether one ``read1`` of ``chunk_bytes`` empties the reader's buffer."""
    return chunk_bytes >= io.DEFAULT_BUFFER_SIZE
