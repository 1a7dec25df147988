"""SHA-256 of a download, computed in a second thread beside the reads and writes.

CPython's ``hashlib`` releases the GIL while it hashes a buffer of more than
2047 bytes, so a thread that only hashes runs at the same time as the thread
that reads the socket and writes the part file. :class:`BackgroundHasher`
collects the received chunks into batches and hands them to that thread
through a bounded queue, so the chunks waiting to be hashed use at most a few
batches of memory. A stream that never fills one batch is hashed in the
calling thread, and no thread is started for it.

The chunks are ``bytes`` objects, or regions of a file that the caller has
written already (:meth:`BackgroundHasher.update_file`): the hashing thread
reads each region back from the file's cached pages.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

# Name of every hashing thread, so a leftover one can be recognized.
THREAD_NAME = "download-sha256"

# Batches waiting in the queue before update() blocks. A file then keeps at
# most 4 batches in memory: these 2, the one being hashed and the one being
# collected. Each is under twice ``batch_bytes``, so under 8 MiB in all with
# the default ``Limits.chunk_bytes`` of 1 MiB.
MAX_QUEUED_BATCHES = 2

_END = object()


class FileRegion(NamedTuple):
    """Bytes ``offset`` to ``offset + length`` of the open file ``fd``."""

    fd: int
    offset: int
    length: int


class HashingError(Exception):
    """Hashing the stream failed in the hashing thread, so its digest is unknown."""


class BackgroundHasher:
    """SHA-256 of a stream of ``bytes`` chunks, hashed in a second thread.

    One thread calls :meth:`update` and :meth:`hexdigest`, and calls
    :meth:`close` when it stops early. A chunk that is not a ``bytes`` object
    is copied, because a buffer that the caller reuses would change while it
    waits in the queue.

    Args:
        batch_bytes: Bytes collected before they are handed to the thread,
            which is started with the first full batch.
        initial: A ``hashlib.sha256`` object that already contains the start
            of the stream, such as the bytes of a resumed part file.
        max_batches: Full batches that may wait for the thread before
            :meth:`update` blocks.
    """

    def __init__(
        self,
        batch_bytes: int,
        *,
        initial: Any = None,
        max_batches: int = MAX_QUEUED_BATCHES,
    ) -> None:
        self._hash = initial if initial is not None else hashlib.sha256()
        self._batch_bytes = batch_bytes
        self._max_batches = max_batches
        self._batch: list[bytes | FileRegion] = []
        self._batch_size = 0
        self._queue: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._discard = False
        self._closed = False
        self._digest: str | None = None

    @property
    def threaded(self) -> bool:
        """Whether a hashing thread was started for this stream."""
        return self._thread is not None

    def update(self, data: bytes) -> None:
        """Add the next chunk of the stream.

        Blocks while ``max_batches`` batches wait for the hashing thread.

        Raises:
            HashingError: If the hashing thread failed.
            ValueError: If the digest was already computed or the hasher
                closed.
        """
        self._check_open("update")
        if type(data) is not bytes:
            data = bytes(data)
        self._batch.append(data)
        self._add_to_batch(len(data))

    def update_file(self, fd: int, offset: int, length: int) -> None:
        """Add the next ``length`` bytes of the stream, already written to ``fd``.

        ``fd`` must be open for reading and stay open until :meth:`hexdigest`
        or :meth:`close` returns, and those bytes must not change meanwhile.
        A region that follows the last one of the batch extends it.

        Raises:
            HashingError: If the hashing thread failed.
            ValueError: If the digest was already computed or the hasher
                closed.
        """
        self._check_open("update_file")
        batch = self._batch
        last = batch[-1] if batch else None
        if (
            type(last) is FileRegion
            and last.fd == fd
            and last.offset + last.length == offset
        ):
            batch[-1] = FileRegion(fd, last.offset, last.length + length)
        else:
            batch.append(FileRegion(fd, offset, length))
        self._add_to_batch(length)

    def hexdigest(self) -> str:
        """Return the lowercase hex SHA-256 of every chunk, once all are hashed.

        Waits for the hashing thread to finish and ends it. Later calls return
        the same digest.

        Raises:
            HashingError: If the hashing thread failed.
            ValueError: If the hasher was closed before a digest was computed.
        """
        if self._digest is not None:
            return self._digest
        if self._closed:
            raise ValueError("hexdigest() called after close()")

        if self._thread is None:
            _hash_batch(self._hash, self._batch)
            self._batch = []
        else:
            if self._batch:
                self._submit_batch()
            self._end_thread()
            self._raise_if_failed()

        self._digest = self._hash.hexdigest()
        return self._digest

    def close(self) -> None:
        """Drop the chunks not yet hashed and end the hashing thread.

        The thread stops after the batch it is hashing, if any. Safe to call
        more than once and after :meth:`hexdigest`, whose digest stays
        available.
        """
        self._closed = True
        self._batch = []
        self._discard = True
        self._end_thread()

    def _check_open(self, method: str) -> None:
        if self._closed or self._digest is not None:
            raise ValueError(f"{method}() called after hexdigest() or close()")
        self._raise_if_failed()

    def _add_to_batch(self, size: int) -> None:
        self._batch_size += size
        if self._batch_size >= self._batch_bytes:
            self._submit_batch()

    def _submit_batch(self) -> None:
        batch = self._batch
        self._batch = []
        self._batch_size = 0
        if self._queue is None:
            self._start_thread()
        assert self._queue is not None
        self._queue.put(batch)

    def _start_thread(self) -> None:
        self._queue = queue.Queue(maxsize=self._max_batches)
        self._thread = threading.Thread(
            target=self._hash_batches, name=THREAD_NAME, daemon=True
        )
        self._thread.start()

    def _end_thread(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        assert self._queue is not None
        # The thread keeps taking batches until it gets this marker, so the
        # put waits for at most the batch being hashed.
        self._queue.put(_END)
        thread.join()

    def _hash_batches(self) -> None:
        assert self._queue is not None
        while True:
            batch = self._queue.get()
            if batch is _END:
                return
            if self._discard or self._error is not None:
                continue
            try:
                _hash_batch(self._hash, batch)
            except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
                logger.debug("hashing thread failed: %r", e)
                self._error = e

    def _raise_if_failed(self) -> None:
        error = self._error
        if error is not None:
            raise HashingError(f"computing the sha256 failed: {error!r}") from error


def _hash_batch(hasher: Any, batch: list[bytes | FileRegion]) -> None:
    for chunk in batch:
        if type(chunk) is bytes:
            hasher.update(chunk)
        else:
            _hash_region(hasher, chunk)


def _hash_region(hasher: Any, region: FileRegion) -> None:
    """Hash a region of a file, read from the file's cached pages."""
    # Reading copies the pages, at about the CPU cost of mapping them. A mapped
    # page past the end of a truncated file would kill the process with
    # SIGBUS, while a read comes back short.
    offset = region.offset
    end = region.offset + region.length
    while offset < end:
        data = os.pread(region.fd, min(_READ_BYTES, end - offset), offset)
        if not data:
            # Another process may have truncated the file below this offset, so
            # the message gives the file's size.
            size = os.fstat(region.fd).st_size
            raise OSError(
                f"the file ends at byte {size}, before the end of the hashed "
                f"region at byte {end}, so another process may have truncated it"
            )
        hasher.update(data)
        offset += len(data)


# Bytes read at a time.
_READ_BYTES = 1024 * 1024
