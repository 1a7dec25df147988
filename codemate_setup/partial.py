"""Partial downloads on disk: ``.part`` files, their sidecars, and ``Content-Range``.

A download in progress is written to ``DEST.part``. When it may be resumed by
a later run, ``DEST.part.json`` (the sidecar) records what the bytes belong
to: the release version and path and the expected sha256 and size. A later
run resumes the part file only when the sidecar describes the same expected
content, so bytes of another release are never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codemate_setup.fsutil import atomic_write_json

if TYPE_CHECKING:
    from codemate_setup.download import DownloadItem

logger = logging.getLogger(__name__)

PART_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"
SIDECAR_FORMAT = 1

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_CONTENT_RANGE = re.compile(
    r"bytes\s+(?P<start>[0-9]+)-(?P<end>[0-9]+)/(?P<total>[0-9]+|\*)",
    re.IGNORECASE,
)


def part_path(dest: Path) -> Path:
    """Return the path of the partial download of ``dest``."""
    return dest.with_name(dest.name + PART_SUFFIX)


def sidecar_path(dest: Path) -> Path:
    """Return the path of the sidecar describing the partial download."""
    return dest.with_name(dest.name + SIDECAR_SUFFIX)


def sidecar_document(item: DownloadItem) -> dict[str, Any]:
    """Describe the expected content of an item, as stored in its sidecar."""
    return {
        "format": SIDECAR_FORMAT,
        "version": str(item.version),
        "path": item.path,
        "sha256": item.sha256,
        "size": item.size,
    }


def sidecar_matches(document: object, item: DownloadItem) -> bool:
    """Tell whether a sidecar describes the same expected content as ``item``.

    Items without a sha256 never match, because their partial bytes cannot be
    checked after a restart.
    """
    if item.sha256 is None or not isinstance(document, dict):
        return False
    return document == sidecar_document(item)


def read_sidecar(dest: Path) -> object:
    """Load the sidecar of ``dest``, or return None if missing or unreadable."""
    try:
        return json.loads(sidecar_path(dest).read_bytes())
    except (OSError, ValueError) as e:
        logger.debug("no usable sidecar for %s: %s", dest, e)
        return None


def write_sidecar(item: DownloadItem) -> None:
    """Record the expected content of ``item`` next to its part file.

    The write is atomic but not fsynced. After a power loss the sidecar may be
    missing, and then the next run discards the part file, which is safe.
    """
    atomic_write_json(sidecar_path(item.dest), sidecar_document(item), durable=False)


def remove_partial(dest: Path) -> None:
    """Delete the part file and the sidecar of ``dest`` if they exist."""
    part_path(dest).unlink(missing_ok=True)
    sidecar_path(dest).unlink(missing_ok=True)


@dataclass(frozen=True)
class ContentRange:
    """A parsed ``Content-Range: bytes START-END/TOTAL`` header.

    Attributes:
        start: Offset of the first byte sent.
        end: Offset of the last byte sent (inclusive).
        total: Length of the whole file, or None for ``*``.
    """

    start: int
    end: int
    total: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """Parse a ``Content-Range`` header of a 206 response.

    Returns:
        The range, or None when the header is missing, malformed, or
        inconsistent (end before start, or end beyond the total).
    """
    if value is None:
        return None

    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        return None

    start, end = int(match["start"]), int(match["end"])
    total = None if match["total"] == "*" else int(match["total"])
    if end < start or (total is not None and end >= total):
        return None
    return ContentRange(start, end, total)


def content_range_problem(
    content_range: ContentRange | None, offset: int, expected_total: int | None
) -> str | None:
    """Check that a 206 response continues the file exactly at ``offset``.

    Args:
        content_range: The parsed header, or None if it was unusable.
        offset: The first byte requested with ``Range: bytes=OFFSET-``.
        expected_total: The file's declared size, if known.

    Returns:
        None when the range starts at ``offset`` and runs to the end of the
        expected file; otherwise a phrase describing the mismatch.
    """
    if content_range is None:
        return "a missing or invalid Content-Range"
    if content_range.start != offset:
        return f"a Content-Range starting at byte {content_range.start}"

    total = content_range.total
    if total is None:
        return "a Content-Range without the total length"
    if expected_total is not None and total != expected_total:
        return f"a Content-Range total of {total} bytes instead of {expected_total}"
    if content_range.end != total - 1:
        return f"a Content-Range ending at byte {content_range.end} of {total}"
    return None
