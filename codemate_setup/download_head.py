"""Checks of the status and headers of one download response.

:class:`ResponseHeadChecks` contains the methods of
:class:`~codemate_setup.download_file.FileDownload` that decide, from the head
of a response, whether its body can be appended to the part file, whether the
part file must start again from byte 0, or whether the attempt fails.
"""

from __future__ import annotations

import logging

import requests

from codemate_setup.download_failures import Mismatch, Restart, Transient
from codemate_setup.download_part import PartFile
from codemate_setup.errors import IntegrityError, MiddlewareError
from codemate_setup.partial import content_range_problem, parse_content_range
from codemate_setup.retry import is_retryable_status, parse_retry_after

logger = logging.getLogger(__name__)


class ResponseHeadChecks:
    """The response head checks of :class:`~codemate_setup.download_file.FileDownload`.

    The methods use the attributes ``run``, ``item``, ``label`` and
    ``server_total`` and the method ``_expected_total`` of that class.
    """

    def _accept(self, response: requests.Response, part: PartFile) -> None:
        """Check the status and headers, and reset the part file when needed."""
        status = response.status_code
        if status == 200:
            if part.received:
                logger.debug("%s: the server ignored Range, restarting", self.label)
                part.reset()
            header_total = _content_length(response)
        elif status == 206:
            header_total = self._accept_partial(response, part)
        elif status == 416:
            raise Restart(f"HTTP 416 for a range from byte {part.received}")
        elif is_retryable_status(status):
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"),
                cap=self.run.limits.max_retry_after,
            )
            raise Transient(f"HTTP {status}", retry_after)
        else:
            raise self._status_error(status)

        self._check_encoding(response)
        self._check_total(header_total)
        if self.item.size is None and (status == 200 or self.server_total is None):
            self.server_total = header_total
        if part.received == 0:
            part.validator = _validator(response)

    def _accept_partial(self, response: requests.Response, part: PartFile) -> int:
        content_range = parse_content_range(response.headers.get("Content-Range"))
        problem = content_range_problem(
            content_range, part.received, self._expected_total()
        )
        if problem is not None or content_range is None or content_range.total is None:
            raise Restart(
                f"the response to a range from byte {part.received} had {problem}"
            )

        if part.received:
            self.run.count("resumes")
            logger.debug("%s: resumed at byte %d", self.label, part.received)
        return content_range.total

    def _status_error(self, status: int) -> MiddlewareError:
        display = self.run.client.display_url
        if status == 404:
            return MiddlewareError(
                f"file {self.item.path} of release {self.item.version} not found on "
                f"the middleware at {display}; check that the release is published "
                "completely"
            )
        return MiddlewareError(
            f"the middleware at {display} returned HTTP {status} for the download of "
            f"{self.label}; check --middleware-url and --repo"
        )

    def _check_encoding(self, response: requests.Response) -> None:
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return
        raise MiddlewareError(
            f"the middleware at {self.run.client.display_url} sent {self.label} "
            f"with Content-Encoding {encoding!r}, but the client requested "
            "identity; configure the middleware or its proxy not to compress "
            "downloads"
        )

    def _check_total(self, header_total: int | None) -> None:
        size = self.item.size
        if size is not None and header_total is not None and header_total != size:
            raise Mismatch(f"{size} bytes", f"a server length of {header_total}")

        limit = self.run.limits.max_file_bytes
        total = size if size is not None else header_total
        if total is not None and total > limit:
            raise IntegrityError(
                f"{self.label} must be at most {limit} bytes, but its length is "
                f"{total}; check the release on the middleware"
            )


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None


def _validator(response: requests.Response) -> str | None:
    """Return a strong ETag usable in ``If-Range``, or None."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return None
