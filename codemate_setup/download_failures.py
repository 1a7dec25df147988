"""Exceptions that end one attempt of a download and tell the retry loop what next.

The head checks of :mod:`codemate_setup.download_head` and the body copy of
:mod:`codemate_setup.download_stream` raise them, and
:meth:`~codemate_setup.download_file.FileDownload.execute` catches them to
resume, to restart from byte 0, or to fail after too many attempts.
"""

from __future__ import annotations


class Transient(Exception):
    """A failure worth retrying, resuming from the bytes already received."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Restart(Exception):
    """The server cannot continue the partial file: retry from byte 0."""


class Mismatch(Exception):
    """The bytes received are not the declared file."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual
