"""The record of one request served by the reference middleware."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RequestRecord:
    """One request as the middleware served it, for assertions in tests.

    The record is listed as soon as the request is parsed. It is complete once
    the client has received the whole response, because the status is set
    before the headers are sent and body bytes are counted before each write.
    Bytes of a failed write are subtracted again.

    Attributes:
        method: HTTP method, or an empty string for an unparseable request.
        path: Request target before the ``?``, as sent (still percent-encoded).
        status: Status code of the response; 0 until it is chosen.
        bytes_sent: Body bytes handed to the socket, headers excluded.
        range_header: The ``Range`` header, or None.
        query: Query string, without the ``?``.
    """

    method: str
    path: str
    status: int
    bytes_sent: int
    range_header: str | None = None
    query: str = ""

    @property
    def range(self) -> str | None:
        """The ``Range`` header, or None (alias of ``range_header``)."""
        return self.range_header
