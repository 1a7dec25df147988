"""Download of one release file: streamed, hashed, bounded, resumed and retried.

:class:`FileDownload` moves one :class:`~codemate_setup.download.DownloadItem`
from the middleware into ``DEST.part`` and renames it to ``DEST`` once its size
and sha256 check out. This module contains its retry loop. It inherits the
checks of each response head from :mod:`codemate_setup.download_head` and the
copy of each body from :mod:`codemate_setup.download_stream`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import requests

from codemate_setup.download_failures import Mismatch, Restart, Transient
from codemate_setup.download_hash import HashingError
from codemate_setup.download_head import ResponseHeadChecks
from codemate_setup.download_part import PartFile
from codemate_setup.download_run import DownloadRun, PlannedItem, hash_stream
from codemate_setup.download_stream import BodyStreaming
from codemate_setup.errors import InstallError, IntegrityError, MiddlewareError
from codemate_setup.filestore import VerifiedFile
from codemate_setup.fsutil import replace_with_retry, write_failure_advice
from codemate_setup.partial import (
    EMPTY_SHA256,
    part_path,
    remove_partial,
    sidecar_path,
    write_sidecar,
)
from codemate_setup.redact import redact_text, redact_url
from codemate_setup.retry import (
    describe_request_error,
    is_retryable_exception,
    retry_wait,
)

logger = logging.getLogger(__name__)

# Restarts from byte 0 after a size or hash mismatch before IntegrityError.
MISMATCH_RESTARTS = 1


class FileDownload(ResponseHeadChecks, BodyStreaming):
    """Download one item into its part file, verify it, and move it into place."""

    def __init__(
        self,
        run: DownloadRun,
        planned: PlannedItem,
        open_stream: Callable[[str, Mapping[str, str]], Any] | None = None,
    ) -> None:
        self.run = run
        # Sends each request; the client's pooled session unless another
        # transport is given, such as the one of codemate_setup.small_transport.
        self.open_stream = open_stream or run.client.open_stream
        self.item = planned.item
        self.resume_bytes = planned.part_bytes
        self.url = run.client.download_url(self.item.version, self.item.path)
        self.part = part_path(self.item.dest)
        self.label = f"{self.item.path} of release {self.item.version}"
        self.credited = 0
        self.has_sidecar = planned.part_bytes > 0
        # The file's total length from the first response, for items whose
        # manifest entry has no size.
        self.server_total: int | None = None

    def execute(self) -> None:
        """Download, verify and rename the file.

        Raises:
            IntegrityError: If the size or hash is still wrong after one
                restart from scratch, or the server sends more bytes than
                allowed.
            MiddlewareError: If the server refuses the file or keeps failing
                after ``Limits.max_retries`` retries.
            InstallError: If the staging folder cannot be written.
            DownloadStopped: If the run was stopped meanwhile.
        """
        item = self.item
        if item.size == 0 and item.sha256 in (None, EMPTY_SHA256):
            self._write_empty()
            return

        try:
            self.run.make_folder(item.dest.parent)
            part = self._open_part()
        except OSError as e:
            raise self._write_error(e) from e

        try:
            digest = self._transfer_until_verified(part)
            written = self._identify(part, digest)
        except IntegrityError:
            # The bytes are known to be wrong, so they must not be resumed.
            remove_partial(item.dest)
            raise
        except HashingError as e:
            # The bytes on disk are intact: the next run hashes them again.
            raise InstallError(
                f"computing the sha256 of the download of {self.label} failed: "
                f"{e.__cause__!r}; run the update again to resume it"
            ) from e
        finally:
            part.close()

        self._move_into_place()
        if written is not None:
            self.run.add_verified(item.dest, written)

    def _identify(self, part: PartFile, digest: str) -> VerifiedFile | None:
        """Return the hash and identity of the part file that was written.

        The identity comes from the open file, not from its path, because
        another process may replace the file at that path before the rename.
        The staged file then has another identity, so its check reads it again.
        """
        try:
            return VerifiedFile.of_descriptor(part.handle.fileno(), digest)
        except OSError as e:
            logger.debug("cannot record the hash of %s: %s", self.part, e)
            return None

    def _open_part(self) -> PartFile:
        item = self.item
        if self.resume_bytes:
            return self._open_resumed_part()

        # Only a part file that a later run may resume needs a sidecar. A file
        # of one chunk is cheaper to fetch again than to describe.
        if item.sha256 is not None and (
            item.size is None or item.size > self.run.limits.chunk_bytes
        ):
            write_sidecar(item)
            self.has_sidecar = True
        handle = open(self.part, "w+b")  # noqa: SIM115 - closed by execute()
        return PartFile(handle, self.run.limits.chunk_bytes)

    def _open_resumed_part(self) -> PartFile:
        """Open the part file of an earlier run and hash the bytes it has."""
        handle = open(self.part, "r+b")  # noqa: SIM115 - closed by execute()
        try:
            # The reusable buffer changes after each read, so these bytes are
            # hashed here rather than in the hashing thread.
            hasher = hash_stream(self.run, handle, hashlib.sha256())
        except BaseException:
            handle.close()
            raise

        part = PartFile(handle, self.run.limits.chunk_bytes, initial=hasher)
        part.received = handle.tell()
        self._credit(part.received, transferred=False)
        self.run.count("bytes_reused", part.received)
        logger.debug("resuming %s from byte %d", self.label, part.received)
        return part

    def _transfer_until_verified(self, part: PartFile) -> str:
        """Fetch the bytes still missing until the part file checks out.

        Returns:
            The sha256 of the part file.
        """
        retries = 0
        restarts = 0
        while True:
            self.run.raise_if_stopped()
            try:
                if not self._complete(part):
                    self._transfer(part)
                return self._verify(part)
            except Mismatch as mismatch:
                self.run.raise_if_stopped()
                if restarts >= MISMATCH_RESTARTS:
                    raise IntegrityError(
                        f"downloaded file {self.item.path} of release "
                        f"{self.item.version} does not match its manifest: "
                        f"expected {mismatch.expected}, got {mismatch.actual}; "
                        "the middleware serves other bytes than its manifest "
                        "declares, so republish the release or check any proxy "
                        "in between"
                    ) from mismatch
                restarts += 1
                reason = f"expected {mismatch.expected}, got {mismatch.actual}"
                self._log_retry(restarts, MISMATCH_RESTARTS, 0.0, reason, "restart")
                self.run.count("retries")
                part.reset()
            except Restart as restart:
                self.run.raise_if_stopped()
                retries = self._before_retry(retries, restart, str(restart), None)
                part.reset()
            except Transient as transient:
                self.run.raise_if_stopped()
                retries = self._before_retry(
                    retries, transient, transient.reason, transient.retry_after
                )
                if not self._can_resume(part):
                    part.reset()

    def _complete(self, part: PartFile) -> bool:
        """Tell whether the part file already has every declared byte."""
        total = self._expected_total()
        return total is not None and part.received >= total and part.received > 0

    def _can_resume(self, part: PartFile) -> bool:
        # A file with a hash is verified at the end, so wrong bytes mixed in by
        # a resume are caught there. Without a hash, only a validator sent in
        # If-Range proves that the file on the server did not change.
        return self.item.sha256 is not None or part.validator is not None

    def _before_retry(
        self,
        retries: int,
        failure: Exception,
        reason: str,
        retry_after: float | None,
    ) -> int:
        """Wait before the next attempt, or raise when no retry is left."""
        limits = self.run.limits
        if retries >= limits.max_retries:
            raise MiddlewareError(
                f"downloading {self.label} from the middleware at "
                f"{self.run.client.display_url} failed after {retries + 1} attempts: "
                f"{reason}; check the middleware and run the update again to "
                "resume"
            ) from failure

        retries += 1
        delay = retry_wait(
            retries, retry_after, limits.backoff_base, limits.backoff_max
        )
        self._log_retry(retries, limits.max_retries, delay, reason, "retry")
        self.run.count("retries")
        self.run.sleep(delay)
        return retries

    def _log_retry(
        self, attempt: int, limit: int, delay: float, reason: str, kind: str
    ) -> None:
        logger.info(
            "%s %d of %d for %s in %.2f s: %s",
            kind,
            attempt,
            limit,
            self.label,
            delay,
            redact_text(reason),
        )

    def _expected_total(self) -> int | None:
        return self.item.size if self.item.size is not None else self.server_total

    def _transfer(self, part: PartFile) -> None:
        """Send one request and append its body to the part file."""
        headers = {"Accept-Encoding": "identity"}
        if part.received:
            headers["Range"] = f"bytes={part.received}-"
            if part.validator is not None:
                headers["If-Range"] = part.validator

        client = self.run.client
        logger.debug("GET %s %s", redact_url(self.url), headers.get("Range", ""))
        try:
            with self.run.waiting_for_head():
                response = self.open_stream(self.url, headers)
        except requests.RequestException as e:
            self.run.raise_if_stopped()
            if not is_retryable_exception(e):
                raise MiddlewareError(
                    f"downloading {self.label} from the middleware at "
                    f"{client.display_url} failed: {describe_request_error(e)} "
                    f"({redact_text(str(e))})"
                ) from e
            raise Transient(describe_request_error(e)) from e

        # Closing a response whose body was read to the end keeps its
        # connection in the pool, while closing it earlier closes the socket.
        with response, self.run.track(response):
            self._accept(response, part)
            self._stream_body(response, part)

    def _credit(self, received: int, *, transferred: bool = True) -> None:
        """Report progress up to ``received`` bytes, never going backwards."""
        if received > self.credited:
            self.run.meter.add_bytes(received - self.credited, transferred=transferred)
            self.credited = received

    def _verify(self, part: PartFile) -> str:
        """Check the size and hash of the part file and return its sha256."""
        item = self.item
        expected_size = self._expected_total()
        if expected_size is not None and part.received != expected_size:
            raise Mismatch(f"{expected_size} bytes", f"{part.received} bytes")
        if expected_size is None and part.received == 0:
            raise Mismatch("a non-empty file", "an empty body")

        actual = part.hasher.hexdigest()
        if item.sha256 is not None and actual != item.sha256.lower():
            raise Mismatch(f"sha256 {item.sha256}", f"sha256 {actual}")

        try:
            part.handle.flush()
        except OSError as e:
            raise self._write_error(e) from e
        return actual

    def _move_into_place(self) -> None:
        try:
            replace_with_retry(self.part, self.item.dest)
            if self.has_sidecar:
                sidecar_path(self.item.dest).unlink(missing_ok=True)
        except OSError as e:
            raise self._write_error(e) from e

        self.run.count("files_downloaded")
        self.run.meter.add_file()
        logger.debug("downloaded %s to %s", self.label, self.item.dest)

    def _write_empty(self) -> None:
        try:
            self.run.make_folder(self.item.dest.parent)
            with open(self.item.dest, "wb") as handle:
                written = VerifiedFile.of_descriptor(handle.fileno(), EMPTY_SHA256)
        except OSError as e:
            raise self._write_error(e) from e
        self.run.add_verified(self.item.dest, written)
        self.run.count("files_downloaded")
        self.run.meter.add_file()

    def _write_error(self, error: OSError) -> InstallError:
        return InstallError(
            f"writing the download of {self.label} to {self.item.dest.parent} "
            f"failed: {error.strerror or error}; {write_failure_advice(error)}"
        )
