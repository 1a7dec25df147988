"""Parsing of request targets, ``Range`` and ``ETag`` headers, free of I/O.

The whole target path is percent-decoded exactly once, as UTF-8, and then
split into segments. An encoded ``/`` (``%2F``) therefore acts as a separator.
That is safe because the decoded release path is validated as a whole
afterwards, so ``..%2F`` is rejected like ``../``. A second level of encoding
(``%252e``) stays literal and names a file called ``%2e``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

from packaging.version import Version

from codemate_setup.errors import ManifestError, UsageError
from codemate_setup.paths import validate_release_path
from codemate_setup.versions import parse_version

_SIMPLE_ENDPOINTS = {"/health": "health", "/releases": "releases"}
_VERSION_ENDPOINTS = ("codebase", "manifest")
_RANGE_SPEC = re.compile(r"^(\d*)-(\d*)$")


class HttpError(Exception):
    """A request that gets an error status and a JSON message."""

    def __init__(
        self,
        status: HTTPStatus,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Route:
    """Endpoint, version and release path named by a request target.

    Attributes:
        endpoint: One of ``health``, ``releases``, ``codebase``, ``manifest``
            and ``download``.
        version: The release version, for every endpoint but the first two.
        release_path: The validated file path, for ``download`` only.
    """

    endpoint: str
    version: Version | None = None
    release_path: str | None = None


@dataclass(frozen=True)
class ByteRange:
    """A satisfiable byte range of a file, whose ``end`` is inclusive as in HTTP."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1


class RangeNotSatisfiable(Exception):
    """The ``Range`` header requests bytes that the file does not have."""


def split_target(target: str) -> tuple[str, str]:
    """Split a request target into its raw path and its raw query."""
    path, _, query = target.partition("?")
    return path, query


def parse_target(target: str) -> Route:
    """Map a request target such as ``/download/v3.0.0/pkg/a.py`` to a route.

    Query parameters (such as ``repo=``) are ignored.

    Args:
        target: The target from the request line, as ``http.server`` decodes
            it (ISO-8859-1).

    Returns:
        The route.

    Raises:
        HttpError: 400 for an undecodable target, an invalid version or an
            unsafe file path; 404 for an unknown endpoint.
    """
    raw_path, _ = split_target(target)
    path = _percent_decode(raw_path)

    if path in _SIMPLE_ENDPOINTS:
        return Route(_SIMPLE_ENDPOINTS[path])

    segments = path.split("/", 3)
    if len(segments) == 3 and segments[0] == "" and segments[1] in _VERSION_ENDPOINTS:
        return Route(segments[1], _parse_url_version(segments[2]))

    if len(segments) >= 3 and segments[0] == "" and segments[1] == "download":
        release_path = segments[3] if len(segments) == 4 else ""
        return Route(
            "download", _parse_url_version(segments[2]), _check_path(release_path)
        )

    raise HttpError(HTTPStatus.NOT_FOUND, f"no endpoint at {path!r}")


def _percent_decode(raw_path: str) -> str:
    if not raw_path.startswith("/"):
        raise HttpError(
            HTTPStatus.BAD_REQUEST,
            f"request target must be a path starting with '/', got {raw_path!r}",
        )

    try:
        return unquote_to_bytes(raw_path.encode("latin-1")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError) as e:
        raise HttpError(
            HTTPStatus.BAD_REQUEST,
            f"request path must be percent-encoded UTF-8, got {raw_path!r}",
        ) from e


def _parse_url_version(text: str) -> Version:
    try:
        return parse_version(text)
    except UsageError as e:
        raise HttpError(HTTPStatus.BAD_REQUEST, str(e)) from e


def _check_path(release_path: str) -> str:
    try:
        return validate_release_path(release_path)
    except ManifestError as e:
        raise HttpError(HTTPStatus.BAD_REQUEST, str(e)) from e


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Interpret a ``Range`` header against a file of ``size`` bytes.

    Only one range in ``bytes`` units is served. A header in another unit,
    with several ranges or with invalid syntax is ignored, so the whole file
    is served. RFC 9110 lets a server ignore any ``Range`` header.

    Args:
        header: The header value, or None when absent.
        size: Length of the file in bytes.

    Returns:
        The range to serve, or None to serve the whole file.

    Raises:
        RangeNotSatisfiable: If the range starts at or beyond the end of the
            file, is a zero-length suffix, or the file is empty.
    """
    if header is None:
        return None

    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None

    match = _RANGE_SPEC.match(spec.strip())
    if match is None:
        return None
    first, last = match.groups()

    if not first and not last:
        return None

    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return ByteRange(max(0, size - suffix), size - 1)

    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header)
    return ByteRange(start, min(end, size - 1))


def etag_in(header: str | None, etag: str) -> bool:
    """Tell whether an ``If-None-Match`` header lists ``etag`` (weak match)."""
    if header is None:
        return False

    candidates = [item.strip() for item in header.split(",")]
    if "*" in candidates:
        return True
    bare = etag.removeprefix("W/")
    return any(item.removeprefix("W/") == bare for item in candidates)


def if_range_allows(header: str | None, etag: str) -> bool:
    """Tell whether an ``If-Range`` header lets the ``Range`` header apply.

    Only an exact strong match of the current ETag does. A date or another
    tag means the client has a different version, so it gets the whole file.
    """
    if header is None:
        return True
    value = header.strip()
    return not value.startswith("W/") and value == etag
