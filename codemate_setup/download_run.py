"""State shared by the parallel downloads of one ``download_all`` call.

:class:`DownloadRun` contains the client, the statistics counters, the progress
meter and the stop signal; :func:`plan_item` finds out, before anything is
fetched, whether an item is already staged or has a part file to resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import requests

from codemate_setup.filestore import VerifiedFile
from codemate_setup.head_watch import interrupt_heads, interruptible
from codemate_setup.partial import (
    part_path,
    read_sidecar,
    remove_partial,
    sidecar_matches,
)
from codemate_setup.redact import redact_url

if TYPE_CHECKING:
    from codemate_setup.client import MiddlewareClient
    from codemate_setup.config import Limits
    from codemate_setup.download import DownloadItem
    from codemate_setup.download_progress import ProgressMeter

logger = logging.getLogger(__name__)


class DownloadStopped(Exception):
    """Raised in a download thread when the run was cancelled or another file failed."""


@dataclass
class PlannedItem:
    """Findings on disk for one item before it is downloaded.

    Attributes:
        item: The requested download.
        reused: The destination already contains the expected content.
        part_bytes: Bytes of a part file that may be resumed, else 0.
    """

    item: DownloadItem
    reused: bool = False
    part_bytes: int = 0

    @property
    def bytes_to_download(self) -> int:
        """Bytes still to fetch, counting 0 for an unknown size."""
        if self.reused or self.item.size is None:
            return 0
        return max(0, self.item.size - self.part_bytes)


class DownloadRun:
    """State shared by the download threads of one ``download_all`` call.

    Thread-safe. Setting the stop signal makes every thread end at its next
    chunk, retry wait or request, and :meth:`interrupt_responses` wakes the
    threads that are blocked reading from a socket.
    """

    def __init__(
        self,
        client: MiddlewareClient,
        meter: ProgressMeter,
        cancel: threading.Event | None,
    ) -> None:
        self.client = client
        self.limits: Limits = client.limits
        self.meter = meter
        self.cancel = cancel
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._responses: set[requests.Response] = set()
        self._interruptibles: list[Any] = []
        self._buffers = threading.local()
        self._folders: set[Path] = set()
        self.first_error: BaseException | None = None
        self.verified: dict[Path, VerifiedFile] = {}
        self.counts = {
            "files_downloaded": 0,
            "files_reused": 0,
            "bytes_downloaded": 0,
            "bytes_reused": 0,
            "retries": 0,
            "resumes": 0,
            "bytes_spliced": 0,
        }

    def add_verified(self, path: Path, verified: VerifiedFile) -> None:
        """Remember the hash of a staged file whose identity is already known."""
        with self._lock:
            self.verified[path] = verified

    def count_download(self, size: int) -> None:
        """Count one file downloaded whole in one response of ``size`` bytes."""
        with self._lock:
            counts = self.counts
            counts["files_downloaded"] += 1
            counts["bytes_downloaded"] += size

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to one of the statistics counters."""
        with self._lock:
            self.counts[name] += amount

    def buffer(self) -> memoryview:
        """Return this thread's reusable chunk buffer."""
        view = getattr(self._buffers, "view", None)
        if view is None:
            view = memoryview(bytearray(self.limits.chunk_bytes))
            self._buffers.view = view
        return view

    def make_folder(self, folder: Path) -> None:
        """Create ``folder`` and its parents, once per run.

        Raises:
            OSError: If the folder cannot be created.
        """
        if folder in self._folders:
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._folders.add(folder)

    def stopped(self) -> bool:
        """Tell whether the downloads must end now."""
        return self.stop.is_set() or (self.cancel is not None and self.cancel.is_set())

    def raise_if_stopped(self) -> None:
        """Raise :class:`DownloadStopped` if the downloads must end now."""
        if self.stopped():
            raise DownloadStopped()

    def sleep(self, seconds: float) -> None:
        """Wait before a retry, ending early with :class:`DownloadStopped`."""
        if self.stop.wait(seconds) or self.stopped():
            raise DownloadStopped()

    def fail(self, error: BaseException) -> None:
        """Record the first fatal error and stop every other download."""
        with self._lock:
            if self.first_error is None:
                self.first_error = error
        self.halt()

    def halt(self) -> None:
        """Set the stop signal and interrupt the reads in progress.

        The signal is set first, so a request that starts to wait for its
        head meanwhile is shut down at once.
        """
        self.stop.set()
        self.interrupt_responses()

    @contextlib.contextmanager
    def track(self, response: requests.Response) -> Iterator[None]:
        """Register a response so that :meth:`halt` can interrupt its reads."""
        with self._lock:
            self._responses.add(response)
        try:
            yield
        finally:
            with self._lock:
                self._responses.discard(response)

    def add_interruptible(self, target: Any) -> None:
        """Register an object whose ``interrupt()`` :meth:`halt` calls."""
        with self._lock:
            self._interruptibles.append(target)

    def waiting_for_head(self) -> contextlib.AbstractContextManager[None]:
        """Let :meth:`halt` wake this thread's request while it waits for a head."""
        return interruptible(self.stop)

    # NOTE: a request still connecting cannot be interrupted, so it ends at
    # the connect timeout of Limits and then raises DownloadStopped.
    def interrupt_responses(self) -> None:
        """Shut down the sockets of the responses being read or awaited."""
        interrupt_heads(self.stop)
        with self._lock:
            responses = list(self._responses)
            interruptibles = list(self._interruptibles)
        for response in responses:
            shutdown_response_socket(response)
        for target in interruptibles:
            target.interrupt()


def shutdown_response_socket(response: requests.Response) -> None:
    """Make a blocked read on ``response`` return at once.

    urllib3 2.3 and later offer ``HTTPResponse.shutdown()``; older versions
    need the socket of the connection, reached through a private attribute.
    """
    raw = response.raw
    try:
        shutdown = getattr(raw, "shutdown", None)
        if shutdown is not None:
            shutdown()
            return
        sock = getattr(getattr(raw, "_connection", None), "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RD)
    except (OSError, ValueError, RuntimeError) as e:
        # The read already ended and released or closed its connection.
        logger.debug("no socket to shut down for %s: %s", redact_url(response.url), e)


def plan_item(run: DownloadRun, item: DownloadItem) -> PlannedItem:
    """Find out whether ``item`` is already staged or has a resumable part file.

    A destination is reused only when the item has a sha256 and the file has
    the declared size and that hash. A part file is kept only when its sidecar
    matches the item and the part is no longer than the declared size.
    Otherwise the part file and its sidecar are deleted.
    """
    run.raise_if_stopped()

    if item.sha256 is not None and _file_matches(run, item.dest, item):
        logger.debug("reusing %s: it already has the expected sha256", item.dest)
        return PlannedItem(item, reused=True)

    part = part_path(item.dest)
    try:
        part_bytes = part.stat().st_size
    except FileNotFoundError:
        return PlannedItem(item)

    resumable = sidecar_matches(read_sidecar(item.dest), item) and (
        item.size is None or part_bytes <= item.size
    )
    if not resumable:
        logger.debug("discarding %s: it is not from the expected content", part)
        remove_partial(item.dest)
        return PlannedItem(item)

    logger.debug("keeping %s (%d bytes) to resume", part, part_bytes)
    return PlannedItem(item, part_bytes=part_bytes)


def _file_matches(run: DownloadRun, path: Path, item: DownloadItem) -> bool:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if item.size is not None and size != item.size:
                return False
            digest = hash_stream(run, handle, hashlib.sha256())
            if digest.hexdigest() != item.sha256:
                return False
            # The identity comes from the file that was read, because another
            # process may have put a different file at the path meanwhile.
            verified = VerifiedFile.of_descriptor(handle.fileno(), item.sha256)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    except OSError as e:
        logger.debug("cannot read %s to reuse it: %s", path, e)
        return False

    run.add_verified(path, verified)
    return True


def hash_stream(run: DownloadRun, handle: BinaryIO, hasher: Any) -> Any:
    """Feed a whole file to ``hasher`` in chunks, checking the stop signal."""
    view = run.buffer()
    while True:
        run.raise_if_stopped()
        count = handle.readinto(view)
        if not count:
            return hasher
        hasher.update(view[:count])
