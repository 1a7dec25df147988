"""The installed listing (``home/installed.json``) and a view of the install folder.

The listing works like git's index: per installed file it stores the sha256,
size, mode and ``mtime_ns`` seen when the file was installed. A file whose
size and modification time still match is trusted without reading it, so
comparing an installation with a release reads only the files that moved.

On disk, compact JSON with one array per file, in the order of ``fields``.
The mode is the number of the permission bits (420 is 0644)::

    {"format": 2, "version": "3.0.0", "entry_point": "initiate.py",
     "requirements": "requirements.txt",
     "fields": ["sha256", "size", "mode", "mtime_ns"],
     "files": {"main.py": ["...", 12, 420, 1700000000000000000]}}

Format 1, written before, is still read: each file is an object with those
keys, and the mode a string such as ``"0644"``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from codemate_setup.errors import InstallError, ManifestError
from codemate_setup.fsutil import atomic_write_json
from codemate_setup.manifest import OWNER_READ, parse_mode
from codemate_setup.paths import validate_release_paths
from codemate_setup.records import make_records

logger = logging.getLogger(__name__)

LISTING_FORMAT = 2
# The mode bits a listing records: read, write and execute for owner, group
# and others.
PERMISSION_BITS = 0o777


class InstalledFile(NamedTuple):
    """Record of one installed file in the listing.

    A named tuple, not a dataclass, because a listing has one per installed
    file and an update builds tens of thousands of them. It is stored as a
    JSON array of its fields.
    """

    sha256: str
    size: int
    mode: int
    mtime_ns: int


_FIELD_COUNT = len(InstalledFile._fields)
# The entry of a file in a listing of format 1, as the fields of InstalledFile.
_FORMAT_1_FIELDS = itemgetter(*InstalledFile._fields)


@dataclass(frozen=True)
class InstalledListing:
    """The files one installed version owns, keyed by release path."""

    version: str
    files: Mapping[str, InstalledFile]
    entry_point: str | None = None
    requirements: str | None = None

    def to_document(self) -> dict[str, Any]:
        """Return the JSON document stored in ``installed.json``."""
        return {
            "format": LISTING_FORMAT,
            "version": self.version,
            "entry_point": self.entry_point,
            "requirements": self.requirements,
            "fields": list(InstalledFile._fields),
            # Named tuples are encoded as arrays.
            "files": dict(self.files),
        }


def listing_from_document(document: object) -> InstalledListing:
    """Build a listing from its stored JSON document, of format 1 or 2.

    The checks run a field at a time over all files, because a listing has
    an entry per installed file.

    Raises:
        ValueError: If a key is missing or has the wrong type.
        ManifestError: If a path is unsafe.
    """
    if not isinstance(document, dict) or not isinstance(document.get("files"), dict):
        raise ValueError("expected an object with a 'files' object")

    form = document.get("format")
    if form not in (1, LISTING_FORMAT):
        raise ValueError(f"unknown listing format {form!r}")

    entries = document["files"]
    paths = list(entries)
    validate_release_paths(paths)

    files = {}
    if entries:
        if form == 1:
            hashes, sizes, texts, mtimes = zip(
                *map(_FORMAT_1_FIELDS, entries.values()), strict=True
            )
            parsed = {text: parse_mode(text) for text in set(texts)}
            modes: Iterable[int] = map(parsed.__getitem__, texts)
        else:
            hashes, sizes, modes, mtimes = _columns(list(entries.values()))
            for mode in set(modes):
                _check_mode(mode)
        rows = zip(
            map(str, hashes), map(int, sizes), modes, map(int, mtimes), strict=True
        )
        files = dict(zip(paths, make_records(InstalledFile, rows), strict=True))

    return InstalledListing(
        version=str(document.get("version") or ""),
        files=files,
        entry_point=document.get("entry_point"),
        requirements=document.get("requirements"),
    )


def _columns(entries: list[Any]) -> tuple[tuple[Any, ...], ...]:
    """Return the values of format 2 entries, one tuple per field."""
    if set(map(type, entries)) != {list} or set(map(len, entries)) != {_FIELD_COUNT}:
        raise ValueError(f"each file must be an array of {_FIELD_COUNT} values")
    return tuple(zip(*entries, strict=True))


def _check_mode(mode: object) -> None:
    if (
        type(mode) is not int
        or not 0 <= mode <= PERMISSION_BITS
        or not mode & OWNER_READ
    ):
        raise ValueError(
            f"a mode must be permission bits that let the owner read, got {mode!r}"
        )


def load_listing(path: Path) -> InstalledListing | None:
    """Read an installed listing.

    Returns:
        The listing, or None when the file is missing or unreadable. An
        unreadable listing is logged and treated as missing: every installed
        file is then hashed again, which is slower but never wrong.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        logger.warning("cannot read the installed listing %s: %s", path, e)
        return None

    try:
        return listing_from_document(json.loads(text))
    except (ValueError, KeyError, TypeError, ManifestError) as e:
        logger.warning(
            "ignoring the invalid installed listing %s (%s); installed files "
            "will be hashed again",
            path,
            e,
        )
        return None


def save_listing(path: Path, listing: InstalledListing) -> None:
    """Write an installed listing atomically, as compact JSON.

    The listing has an entry per installed file and every update writes it.
    The standard library encodes compact JSON in C, several times faster than
    indented JSON, which it encodes in Python.
    """
    atomic_write_json(path, listing.to_document(), compact=True)


def read_version_file(path: Path) -> str | None:
    """Return the installed version from ``version.txt``, or None if absent."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InstallError(
            f"cannot read the installed version from {path}: {e}; "
            "check the permissions of the home folder"
        ) from e

    # Bytes that are not UTF-8 become U+FFFD, so the caller's version check
    # rejects them with the same message as any other garbage.
    text = data.decode("utf-8", errors="replace").strip()
    return text or None
