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
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from codemate_setup.errors import InstallError, ManifestError
from codemate_setup.filestore import hash_file
from codemate_setup.fsutil import atomic_write_json
from codemate_setup.manifest import OWNER_READ, parse_mode
from codemate_setup.paths import ReleaseRoot, validate_release_paths
from codemate_setup.records import make_records

logger = logging.getLogger(__name__)

LISTING_FORMAT = 2


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
    if type(mode) is not int or not 0 <= mode <= 0o777 or not mode & OWNER_READ:
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


class PathKind(str, Enum):
    """State of a release path on disk right now."""

    MISSING = "missing"
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    OTHER = "other"


class FileState(NamedTuple):
    """A path as found on disk; hash, size, mode and mtime only for files.

    A named tuple for the same reason as :class:`InstalledFile`.
    """

    kind: PathKind
    sha256: str | None = None
    size: int | None = None
    mode: int | None = None
    mtime_ns: int | None = None


@dataclass
class InstallView:
    """Read access to the install folder, checking every path it is asked about.

    Each path goes through a :class:`ReleaseRoot`, so a path that leaves the
    folder through a symbolic link raises ``ManifestError`` before anything is
    planned. Files that the listing records with an unchanged size and mtime
    are not read; ``hashed`` counts the files that had to be read.

    What the view finds is kept for its life: the install folder does not
    change while a plan is built from it.

    Args:
        root: The install folder.
        listing: The installed listing, if there is one.
    """

    root: Path
    listing: InstalledListing | None = None
    hashed: int = 0
    _states: dict[str, FileState] = field(default_factory=dict, repr=False)
    _inside: ReleaseRoot = field(init=False, repr=False)
    _known: Mapping[str, InstalledFile] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._inside = ReleaseRoot(self.root)
        self._known = self.listing.files if self.listing is not None else {}

    def state(self, path: str) -> FileState:
        """Return what ``path`` is, with the file's hash when it is a file.

        Raises:
            ManifestError: If the path resolves outside the install folder.
            InstallError: If the file cannot be read.
        """
        cached = self._states.get(path)
        if cached is not None:
            return cached
        return self.states([path])[0]

    def states(self, paths: Sequence[str]) -> list[FileState]:
        """Return what each path is, as :meth:`state` does, for many at once.

        The paths are checked together, and each costs an lstat and little
        more, unless its file must be hashed.

        Raises:
            ManifestError: If a path is unsafe or resolves outside the
                install folder.
            InstallError: If a file cannot be read.
        """
        # This loop runs for every installed file, so it looks names up once
        # and handles an unchanged regular file inline.
        states = self._states
        known_files = self._known
        lstat = os.lstat
        file_kind = PathKind.FILE
        result: list[FileState] = []
        append = result.append
        for path, target in zip(paths, self._inside.join_all(paths), strict=True):
            found = states.get(path)
            if found is None:
                try:
                    info = lstat(target)
                except (FileNotFoundError, NotADirectoryError):
                    found = FileState(PathKind.MISSING)
                else:
                    known = known_files.get(path)
                    st_mode = info.st_mode
                    if (
                        known is not None
                        and known.size == info.st_size
                        and known.mtime_ns == info.st_mtime_ns
                        and stat.S_ISREG(st_mode)
                    ):
                        # Built as make_records builds records, without a call.
                        found = tuple.__new__(
                            FileState,
                            (
                                file_kind,
                                known.sha256,
                                known.size,
                                stat.S_IMODE(st_mode),
                                known.mtime_ns,
                            ),
                        )
                    else:
                        found = self._describe(path, target, info)
                states[path] = found
            append(found)
        return result

    def kind(self, path: str) -> PathKind:
        """Return what ``path`` is without hashing; a link to a folder is a folder.

        Raises:
            ManifestError: If the path resolves outside the install folder.
        """
        target = self._inside.join(path)
        try:
            info = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            return PathKind.MISSING
        if stat.S_ISLNK(info.st_mode):
            return PathKind.DIR if os.path.isdir(target) else PathKind.SYMLINK
        return _kind_of(info.st_mode)

    def tree(self, folder: str) -> list[tuple[str, PathKind]]:
        """List everything below ``folder``, as release paths with their kind.

        Links are listed as links and never followed.
        """
        return list(_walk(Path(self._inside.join(folder)), folder))

    def _describe(self, path: str, target: str, info: os.stat_result) -> FileState:
        st_mode = info.st_mode
        if not stat.S_ISREG(st_mode):
            return FileState(_kind_of(st_mode))

        mode = stat.S_IMODE(st_mode)
        known = self._known.get(path)
        if (
            known is not None
            and known.size == info.st_size
            and known.mtime_ns == info.st_mtime_ns
        ):
            return FileState(
                PathKind.FILE, known.sha256, known.size, mode, known.mtime_ns
            )

        try:
            sha256, _size = hash_file(Path(target))
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
