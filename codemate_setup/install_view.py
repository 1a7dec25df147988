"""What the install folder contains now, read for the planner.

An :class:`InstallView` reports, for each release path, whether it is a file,
a folder, a link or missing, and gives a file's hash. A file that the
installed listing records with the same size and modification time is
trusted without reading it, as git trusts its index.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import NamedTuple

from codemate_setup.errors import InstallError
from codemate_setup.filestore import hash_file
from codemate_setup.fsutil import write_failure_advice
from codemate_setup.listing import InstalledFile, InstalledListing
from codemate_setup.paths import ReleaseRoot

logger = logging.getLogger(__name__)

# Whether lstat can take a path relative to an open folder (not on Windows).
# The sets name os.stat, which os.lstat calls without following links.
_RELATIVE_LSTAT = (
    os.stat in os.supports_dir_fd and os.stat in os.supports_follow_symlinks
)


class PathKind(str, Enum):
    """State of a release path on disk right now."""

    MISSING = "missing"
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    OTHER = "other"


class FileState(NamedTuple):
    """A path as found on disk; hash, size, mode and mtime only for files.

    A named tuple for the same reason as
    :class:`~codemate_setup.listing.InstalledFile`.
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
        more, unless its file must be hashed. The lstat names the file
        relative to its open folder, which spares the kernel a walk down the
        whole path for every file.

        Raises:
            ManifestError: If a path is unsafe or resolves outside the
                install folder.
            InstallError: If a file cannot be read.
        """
        self._inside.prove_all(paths)
        # This loop runs for every installed file, so it looks names up once
        # and handles an unchanged regular file inline.
        states = self._states
        known_files = self._known
        lstat = os.lstat
        is_regular = stat.S_ISREG
        file_kind = PathKind.FILE
        prefix = self._inside.prefix
        result: list[FileState] = []
        append = result.append
        with _FolderCursor(prefix) as cursor:
            for path in paths:
                found = states.get(path)
                if found is None:
                    folder, _, name = path.rpartition("/")
                    if folder != cursor.folder:
                        cursor.enter(folder)
                    fd = cursor.fd
                    try:
                        if fd is None:
                            info = lstat(prefix + path)
                        else:
                            info = lstat(name, dir_fd=fd)
                    except (FileNotFoundError, NotADirectoryError):
                        found = FileState(PathKind.MISSING)
                    except OSError as e:
                        raise _inspect_failed(prefix + path, e) from e
                    else:
                        known = known_files.get(path)
                        st_mode = info.st_mode
                        if (
                            known is not None
                            and known[1] == info.st_size
                            and known[3] == info.st_mtime_ns
                            and is_regular(st_mode)
                        ):
                            # Built as make_records builds records, without a call.
                            found = tuple.__new__(
                                FileState,
                                (
                                    file_kind,
                                    known[0],
                                    known[1],
                                    st_mode & 0o7777,
                                    known[3],
                                ),
                            )
                        else:
                            # Hashing opens the file: the folder's descriptor
                            # is closed first, so it needs no extra one.
                            cursor.leave()
                            found = self._describe(path, info)
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

    def _describe(self, path: str, info: os.stat_result) -> FileState:
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

        target = self._inside.join(path)
        try:
            sha256, _size = hash_file(Path(target))
        except OSError as e:
            advice = write_failure_advice(e, otherwise="check its permissions")
            raise InstallError(
                f"cannot read the installed file {target}: {e}; {advice}"
            ) from e
        self.hashed += 1
        logger.debug("hashed %s: listing entry missing or stale", path)
        return FileState(PathKind.FILE, sha256, info.st_size, mode, info.st_mtime_ns)


class _FolderCursor:
    """The open descriptor of the folder whose files are being looked at.

    ``fd`` is None where lstat cannot take a folder descriptor, and for a
    folder that cannot be opened (missing, not a folder, or not readable).
    The caller then uses the whole path, which gives the same result.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.folder: str | None = None
        self.fd: int | None = None

    def __enter__(self) -> _FolderCursor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.leave()

    def enter(self, folder: str) -> None:
        """Make ``folder`` (a release path, "" for the root) the current one."""
        self.leave()
        self.folder = folder
        if not _RELATIVE_LSTAT:
            return
        # NOTE: a folder replaced by a link after ReleaseRoot proved it is
        # followed here, as the moves of an update follow it.
        try:
            self.fd = os.open(
                self.prefix + folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            )
        except OSError:
            self.fd = None

    def leave(self) -> None:
        """Close the current folder; the next file enters its folder again."""
        self.folder = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _inspect_failed(target: str, error: OSError) -> InstallError:
    advice = write_failure_advice(
        error, otherwise="remove or repair it, then run the update again"
    )
    return InstallError(
        f"cannot inspect the installed path {target}: {error.strerror or error}; "
        f"{advice}"
    )


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
