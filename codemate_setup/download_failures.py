"""Exceptions that end one download attempt and tell the retry loop how to go on.

:class:`~codemate_setup.download_file.FileDownload` and the methods it inherits
from :mod:`codemate_setup.download_head` and :mod:`codemate_setup.download_stream`
raise them. Its retry loop, ``FileDownload._transfer_until_verified``, catches
them to resume, to restart from byte 0, or to raise an error after too many
attempts.
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
