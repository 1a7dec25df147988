"""Flat file stores (staging and backups) and the file helpers the installer uses.

Staged downloads and backed-up files are kept in flat folders under a name
derived from the release path. Flat names never collide with the downloader's
``.part`` temp files, never nest deeper than one level (Windows path length),
and map one release path to one stored file, which is what the journal's
recovery relies on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from codemate_setup.errors import IntegrityError
from codemate_setup.fsutil import fsync_dir, replace_with_retry

logger = logging.getLogger(__name__)

# Read size for hashing and copying, in bytes.
READ_CHUNK_BYTES = 1024 * 1024


def store_name(release_path: str) -> str:
    """Return the flat file name that stores ``release_path`` in a store folder."""
    return hashlib.sha256(release_path.encode("utf-8")).hexdigest()


def store_path(folder: Path, release_path: str) -> Path:
    """Return where ``release_path`` lives inside the flat store ``folder``."""
    return folder / store_name(release_path)


def hash_file(path: Path) -> tuple[str, int]:
    """Compute the sha256 of a file.

    Returns:
        The lowercase hex digest and the number of bytes read.

    Raises:
        OSError: If the file cannot be read.
    """
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(READ_CHUNK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            size += count
    return digest.hexdigest(), size


def copy_file_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` so that readers see the old or new file.

    The bytes go to a temp file beside the target, which is fsynced and
    renamed over it, then the folder is fsynced.

    Raises:
        OSError: If reading or writing fails; the target is left unchanged.
    """
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    temp_path = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, READ_CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        replace_with_retry(temp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp_path.unlink()
        raise

    fsync_dir(target.parent)


def remove_file(path: Path) -> None:
    """Delete a file if it exists, then fsync its folder."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def contains_files(folder: Path) -> bool:
    """Tell whether ``folder`` or any folder below it contains a non-folder entry."""
    if not folder.is_dir():
        return False
    return any(files for _root, _dirs, files in os.walk(folder))


def remove_tree(folder: Path) -> None:
    """Delete a folder tree, clearing read-only flags that block it on Windows."""

    def make_writable_and_retry(function, path, _error) -> None:  # noqa: ANN001
        os.chmod(path, stat.S_IWRITE | stat.S_IREAD | stat.S_IEXEC)
        function(path)

    if not folder.exists():
        return
    logger.debug("removing %s", folder)
    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=make_writable_and_retry)
    else:
        shutil.rmtree(folder, onerror=make_writable_and_retry)


@dataclass(frozen=True)
class VerifiedFile:
    """A staged file's hash as computed while it was downloaded, and its identity.

    The identity (size, modification time and inode) shows whether the file
    changed since, the way the installed listing does for installed files.
    """

    sha256: str
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path, sha256: str) -> VerifiedFile:
        """Record ``sha256`` for the file at ``path`` as it is now.

        Raises:
            OSError: If the file cannot be examined.
        """
        return cls._from_info(sha256, os.lstat(path))

    @classmethod
    def of_descriptor(cls, descriptor: int, sha256: str) -> VerifiedFile:
        """Record ``sha256`` for the open file ``descriptor`` as it is now.

        Unlike :meth:`of`, this describes the file that was written or read,
        even when another process has put a different file at its path.

        Raises:
            OSError: If the file cannot be examined.
        """
        return cls._from_info(sha256, os.fstat(descriptor))

    @classmethod
    def _from_info(cls, sha256: str, info: os.stat_result) -> VerifiedFile:
        return cls(sha256, info.st_size, info.st_mtime_ns, info.st_ino)

    def matches(self, info: os.stat_result) -> bool:
        """Tell whether ``info`` describes the same, unchanged file."""
        return (info.st_size, info.st_mtime_ns, info.st_ino) == (
            self.size,
            self.mtime_ns,
            self.inode,
        )


def verify_staged_file(
    path: str,
    staged: Path,
    sha256: str | None,
    size: int | None,
    known: VerifiedFile | None = None,
) -> tuple[str, int]:
    """Check a staged file against the manifest and return its hash and size.

    Args:
        path: The release path, for messages.
        staged: The staged file.
        sha256: The declared hash, or None for a legacy entry.
        size: The declared size, or None.
        known: The hash computed while the file was downloaded. It is used
            instead of reading the file again when the file is unchanged since.

    Raises:
        IntegrityError: If the file is missing or does not match; a file that
            does not match is deleted so the next run downloads it again.
    """
    try:
        info = os.lstat(staged)
        if not stat.S_ISREG(info.st_mode):
            raise FileNotFoundError(f"{staged} is not a regular file")
        if known is not None and known.matches(info):
            digest, actual_size = known.sha256, known.size
        else:
            digest, actual_size = hash_file(staged)
    except OSError as e:
        raise IntegrityError(
            f"the staged file for {path!r} cannot be read: {e}; run the update "
            "again to download it afresh"
        ) from e

    problem = None
    if size is not None and actual_size != size:
        problem = f"size must be {size} bytes, found {actual_size}"
    elif sha256 is not None and digest != sha256:
        problem = f"sha256 must be {sha256}, found {digest}"
    if problem is not None:
        staged.unlink(missing_ok=True)
        raise IntegrityError(
            f"the downloaded file {path!r} does not match the manifest: {problem}; "
            "run the update again to download it afresh"
        )
    return digest, actual_size
