"""The installed listing (``home/installed.json``) and a view of the install folder.

The listing works like git's index: per installed file it stores the sha256,
size, mode and ``mtime_ns`` seen when the file was installed. A file whose
size and modification time still match is trusted without reading it, so
comparing an installation with a release reads only the files that moved.

On disk::

    {"format": 1, "version": "3.0.0", "entry_point": "initiate.py",
     "requirements": "requirements.txt",
     "files": {"main.py": {"sha256": "...", "size": 12, "mode": "0644",
                           "mtime_ns": 1700000000000000000}}}
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from codemate_setup.errors import InstallError, ManifestError
from codemate_setup.filestore import hash_file
from codemate_setup.fsutil import atomic_write_json
from codemate_setup.manifest import format_mode, parse_mode
from codemate_setup.paths import resolve_inside, validate_release_path

logger = logging.getLogger(__name__)

LISTING_FORMAT = 1


@dataclass(frozen=True)
class InstalledFile:
    """Record of one installed file in the listing."""

    sha256: str
    size: int
    mode: int
    mtime_ns: int


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
            "files": {
                path: {
                    "sha256": entry.sha256,
                    "size": entry.size,
                    "mode": format_mode(entry.mode),
                    "mtime_ns": entry.mtime_ns,
                }
                for path, entry in sorted(self.files.items())
            },
        }


def listing_from_document(document: object) -> InstalledListing:
    """Build a listing from its stored JSON document.

    Raises:
        ValueError: If a key is missing or has the wrong type.
    """
    if not isinstance(document, dict) or not isinstance(document.get("files"), dict):
        raise ValueError("expected an object with a 'files' object")

    files = {}
    for path, entry in document["files"].items():
        validate_release_path(path)
        files[path] = InstalledFile(
            sha256=str(entry["sha256"]),
            size=int(entry["size"]),
            mode=parse_mode(entry["mode"]),
            mtime_ns=int(entry["mtime_ns"]),
        )

    return InstalledListing(
        version=str(document.get("version") or ""),
        files=files,
        entry_point=document.get("entry_point"),
        requirements=document.get("requirements"),
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
    """Write an installed listing atomically."""
    atomic_write_json(path, listing.to_document())


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


class PathKind(str, Enum):
    """State of a release path on disk right now."""

    MISSING = "missing"
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    OTHER = "other"


@dataclass(frozen=True)
class FileState:
    """A path as found on disk; hash, size, mode and mtime only for files."""

    kind: PathKind
    sha256: str | None = None
    size: int | None = None
    mode: int | None = None
    mtime_ns: int | None = None


@dataclass
class InstallView:
    """Read access to the install folder, checking every path it is asked about.

    Each path goes through :func:`resolve_inside`, so a path that leaves the
    folder through a symbolic link raises ``ManifestError`` before anything is
    planned. Files that the listing records with an unchanged size and mtime
    are not read; ``hashed`` counts the files that had to be read.

    Args:
        root: The install folder.
        listing: The installed listing, if there is one.
    """

    root: Path
    listing: InstalledListing | None = None
    hashed: int = 0
    _states: dict[str, FileState] = field(default_factory=dict, repr=False)
    # Resolved folders, valid for the view's life like ``_states``: the
    # install folder does not change while a plan is built from it.
    _realpaths: dict[Path, Path] = field(default_factory=dict, repr=False)

    def state(self, path: str) -> FileState:
        """Return what ``path`` is, with the file's hash when it is a file.

        Raises:
            ManifestError: If the path resolves outside the install folder.
            InstallError: If the file cannot be read.
        """
        cached = self._states.get(path)
        if cached is not None:
            return cached

        target = resolve_inside(self.root, path, realpaths=self._realpaths)
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            result = FileState(PathKind.MISSING)
        except NotADirectoryError:
            result = FileState(PathKind.MISSING)
        else:
            result = self._describe(path, target, info)

        self._states[path] = result
        return result

    def kind(self, path: str) -> PathKind:
        """Return what ``path`` is without hashing; a link to a folder is a folder.

        Raises:
            ManifestError: If the path resolves outside the install folder.
        """
        target = resolve_inside(self.root, path, realpaths=self._realpaths)
        try:
            info = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            return PathKind.MISSING
        if stat.S_ISLNK(info.st_mode):
            return PathKind.DIR if target.is_dir() else PathKind.SYMLINK
        return _kind_of(info.st_mode)

    def tree(self, folder: str) -> list[tuple[str, PathKind]]:
        """List everything below ``folder``, as release paths with their kind.

        Links are listed as links and never followed.
        """
        start = resolve_inside(self.root, folder, realpaths=self._realpaths)
        return list(_walk(start, folder))

    def _describe(self, path: str, target: Path, info: os.stat_result) -> FileState:
        kind = _kind_of(info.st_mode)
        if kind is not PathKind.FILE:
            return FileState(kind)

        mode = stat.S_IMODE(info.st_mode)
        known = self.listing.files.get(path) if self.listing else None
        if (
            known is not None
            and known.size == info.st_size
            and known.mtime_ns == info.st_mtime_ns
        ):
            return FileState(
                PathKind.FILE, known.sha256, info.st_size, mode, info.st_mtime_ns
            )

        try:
            sha256, _size = hash_file(target)
        except OSError as e:
            raise InstallError(
                f"cannot read the installed file {target}: {e}; check its permissions"
            ) from e
        self.hashed += 1
        logger.debug("hashed %s: listing entry missing or stale", path)
        return FileState(PathKind.FILE, sha256, info.st_size, mode, info.st_mtime_ns)


def _kind_of(st_mode: int) -> PathKind:
    if stat.S_ISREG(st_mode):
        return PathKind.FILE
    if stat.S_ISDIR(st_mode):
        return PathKind.DIR
    if stat.S_ISLNK(st_mode):
        return PathKind.SYMLINK
    return PathKind.OTHER


def _walk(start: Path, prefix: str) -> Iterator[tuple[str, PathKind]]:
    try:
        entries = list(os.scandir(start))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        path = f"{prefix}/{entry.name}"
        if entry.is_symlink():
            yield path, PathKind.SYMLINK
        elif entry.is_dir(follow_symlinks=False):
            yield path, PathKind.DIR
            yield from _walk(Path(entry.path), path)
        elif entry.is_file(follow_symlinks=False):
            yield path, PathKind.FILE
        else:
            yield path, PathKind.OTHER


def stat_installed(root: Path, path: str) -> tuple[int, int]:
    """Return the size and ``mtime_ns`` of an installed file.

    Raises:
        OSError: If the file does not exist.
    """
    info = os.stat(root.joinpath(*path.split("/")))
    return info.st_size, info.st_mtime_ns
