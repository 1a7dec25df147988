"""Copy of one download response body into the part file.

:class:`BodyStreaming` contains the methods of
:class:`~codemate_setup.download_file.FileDownload` that read a response body
chunk by chunk, or splice it from the socket, into the part file while the
bytes are hashed. They stop at the expected length, and they raise
:class:`~codemate_setup.download_failures.Transient` for a broken or stalled
transfer so that it is retried.
"""

from __future__ import annotations

import http.client
import logging

import requests
import urllib3.exceptions

from codemate_setup.download_body import (
    Body,
    ReadBody,
    SplicedBody,
    SpliceUnsupported,
    can_read_one_chunk,
    splice_socket,
)
from codemate_setup.download_failures import Mismatch, Transient
from codemate_setup.download_part import PartFile
from codemate_setup.download_stall import StallGuard
from codemate_setup.errors import IntegrityError
from codemate_setup.retry import CUT_OFF_REASON, describe_request_error

logger = logging.getLogger(__name__)

# Errors raised while reading a response body that mean the transfer broke.
_READ_ERRORS = (
    http.client.HTTPException,
    urllib3.exceptions.HTTPError,
    requests.RequestException,
    OSError,
)


class BodyStreaming:
    """The body copy of :class:`~codemate_setup.download_file.FileDownload`.

    The methods use the attributes ``run`` and ``label`` and the methods
    ``_expected_total``, ``_credit`` and ``_write_error`` of that class.
    """

    def _stream_body(self, response: requests.Response, part: PartFile) -> None:
        """Move the body into the part file, hashing it, never past the total."""
        run = self.run
        chunk_bytes = run.limits.chunk_bytes
        total = self._expected_total()
        limit = total if total is not None else run.limits.max_file_bytes
        guard = StallGuard(run.limits.low_speed_bytes, run.limits.low_speed_seconds)
        body: Body = ReadBody(response)
        may_splice = total is not None
        # A slow window that ends the body is no stall, because nothing is left
        # to retry. On a body of unknown length, only a further chunk shows that.
        stalled: str | None = None

        try:
            while part.received < limit:
                run.raise_if_stopped()
                requested = min(chunk_bytes, limit - part.received)
                try:
                    size = self._receive(body, requested, part, total)
                except SpliceUnsupported as e:
                    logger.debug("%s: reading the body as usual: %s", self.label, e)
                    body.close()
                    body = ReadBody(response)
                    continue
                if not size:
                    break
                if stalled is not None:
                    # Retried like a cut connection, so the bytes written are kept.
                    raise Transient(stalled)

                self._store(body, part)
                part.received += size
                run.count("bytes_downloaded", size)
                if type(body) is SplicedBody:
                    run.count("bytes_spliced", size)
                self._credit(part.received)
                stalled = guard.add(size)
                if stalled is not None and total is not None and part.received < total:
                    # Retried like a cut connection, so the bytes written are kept.
                    raise Transient(stalled)
                if may_splice and total is not None:
                    may_splice = False
                    body = self._splice_rest(response, part, total) or body

            self._check_body_end(body, part, total, limit)
        finally:
            body.close()
            if type(body) is SplicedBody:
                # Spliced bytes are written at their offset, which leaves the
                # file position behind them for the next write.
                part.handle.seek(part.received)

    def _splice_rest(
        self, response: requests.Response, part: PartFile, total: int
    ) -> SplicedBody | None:
        """Return the rest of a large plain body as a spliced one, if it can be."""
        remaining = total - part.received
        if remaining <= self.run.limits.chunk_bytes or not can_read_one_chunk(
            self.run.limits.chunk_bytes
        ):
            return None
        sock = splice_socket(response, remaining)
        if sock is None:
            return None
        try:
            # Spliced bytes go to the file behind the buffered writer's back.
            part.handle.flush()
        except OSError as e:
            raise self._write_error(e) from e
        try:
            return SplicedBody(sock, part.region_fd())
        except OSError as e:
            # Such as no descriptor left for the pipe.
            logger.debug("%s: reading the body as usual: %s", self.label, e)
            return None

    def _receive(
        self, body: Body, count: int, part: PartFile, total: int | None
    ) -> int:
        try:
            return body.receive(count)
        except _READ_ERRORS as e:
            self.run.raise_if_stopped()
            reason = describe_request_error(e)
            if reason == CUT_OFF_REASON and total is not None:
                reason = f"the connection closed after {part.received} of {total} bytes"
            raise Transient(reason) from e

    def _store(self, body: Body, part: PartFile) -> None:
        try:
            body.store(part.handle, part.received, part.hasher)
        except OSError as e:
            raise self._write_error(e) from e

    def _check_body_end(
        self,
        body: Body,
        part: PartFile,
        total: int | None,
        limit: int,
    ) -> None:
        self.run.raise_if_stopped()
        if total is not None and part.received < total:
            raise Transient(
                f"the connection closed after {part.received} of {total} bytes"
            )

        # Any further byte exceeds the declared size.
        if part.received >= limit and self._has_more(body, part, total):
            if total is None:
                raise IntegrityError(
                    f"{self.label} must be at most {limit} bytes, but the server "
                    "sent more, so the download was stopped"
                )
            raise Mismatch(f"{total} bytes", "more bytes than declared")

    def _has_more(self, body: Body, part: PartFile, total: int | None) -> bool:
        try:
            return body.has_more()
        except _READ_ERRORS as e:
            self.run.raise_if_stopped()
            raise Transient(describe_request_error(e)) from e
