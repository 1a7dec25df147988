"""Download of small release files over one plain keep-alive connection per thread.

Most of the Python work for a file of a few KiB is in the HTTP client:
``requests`` and ``urllib3`` prepare, send and parse each request with many
layers of Python. For a file whose manifest entry declares a size of
at most :data:`SMALL_FILE_BYTES` and a sha256, :class:`SmallFileFetcher` sends
the GET itself over the download thread's own connection
(:mod:`codemate_setup.small_transport`). It reads the head
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
with the response as received so far. ``FileDownload`` replays that response,
so every check, retry, backoff, ``Retry-After`` wait and message is the
regular path's, and no request is sent twice. Its further attempts use the
same connection.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from codemate_setup.download_file import FileDownload
from codemate_setup.download_stall import StallGuard
from codemate_setup.errors import InstallError
from codemate_setup.filestore import VerifiedFile
from codemate_setup.fsutil import write_failure_advice
from codemate_setup.small_transport import FastResponse, SmallFileTransport

if TYPE_CHECKING:
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

_WRITE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_TRUNC
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)


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
            limits = run.limits
            # A stalled body goes to FileDownload, which retries it.
            guard = StallGuard(limits.low_speed_bytes, limits.low_speed_seconds)
            body, error = response.read_body(item.size, guard)
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
            fd = _open_for_write(dest)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                verified = VerifiedFile.of_descriptor(fd, digest)
            finally:
                os.close(fd)
        except OSError as e:
            raise InstallError(
                f"writing the download of {item.path} of release {item.version} to "
                f"{dest.parent} failed: {e.strerror or e}; {write_failure_advice(e)}"
            ) from e

        run.add_verified(dest, verified)
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


def _open_for_write(dest: Path) -> int:
    try:
        return os.open(dest, _WRITE_FLAGS, 0o666)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
    # A link left in staging is replaced, never followed, as a rename would.
    logger.debug("replacing the link %s in staging", dest)
    dest.unlink()
    return os.open(dest, _WRITE_FLAGS, 0o666)


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
