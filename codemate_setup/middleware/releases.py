"""Read access to a folder of published releases.

The list of release folders is read again whenever the releases folder
changes, so releases published while the server runs are served at once.
Parsed JSON documents, and the bodies sent for them, are cached until their
file changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from packaging.version import Version

from codemate_setup.errors import UsageError
from codemate_setup.middleware.routing import HttpError
from codemate_setup.versions import parse_version

logger = logging.getLogger(__name__)

RELEASE_FILE = "release.json"
MANIFEST_FILE = "manifest.json"
FILES_DIR = "files"

# Keys that the existing (legacy) middleware puts in a manifest.
LEGACY_MANIFEST_KEYS = (
    "version",
    "previous_version",
    "codebase",
    "requirements",
    "entry_point",
)
_LIST_KEYS = ("files_add", "files_edit", "files_delete")

# Flags that open a file without following a final symbolic link and without
# blocking on a FIFO. Each is 0 where the platform lacks it.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | _NOFOLLOW
_FILE_FLAGS |= getattr(os, "O_NONBLOCK", 0)
# Seconds after a change of the releases folder during which its listing is
# read again on every request: a second change within the same tick of the
# file system's clock would leave the modification time as it was.
RACY_SECONDS = 2.0

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW


@dataclass(frozen=True)
class JsonBody:
    """A JSON document encoded as the body of a response.

    Attributes:
        data: UTF-8 JSON and a final line break.
        etag: Strong entity tag derived from ``data``.
    """

    data: bytes
    etag: str


def encode_body(document: Any) -> JsonBody:
    """Encode ``document`` as a response body with its entity tag."""
    data = json.dumps(document, ensure_ascii=False).encode("utf-8") + b"\n"
    return JsonBody(data, f'"{hashlib.sha256(data).hexdigest()[:32]}"')


@dataclass
class _Cached:
    key: tuple[int, int]
    document: Any
    body: JsonBody | None = None


@dataclass
class OpenedFile:
    """A release file opened for serving. The caller closes ``file``."""

    file: BinaryIO
    size: int
    etag: str
    mtime: float


class ReleaseStore:
    """Serve the releases under one folder, in normal or legacy form."""

    def __init__(self, root: Path, *, legacy: bool = False) -> None:
        self.root = root
        self.legacy = legacy
        self._cache: dict[Path, _Cached] = {}
        self._cache_lock = threading.Lock()
        self._dirs_cache: tuple[tuple[int, int, int], dict[Version, Path]] | None = None

    def health(self) -> dict[str, Any]:
        """Return the health document, with the number of releases served."""
        return {"status": "ok", "releases": len(self._release_dirs())}

    def list_releases(self) -> list[dict[str, Any]]:
        """Return one summary per readable release, in version order.

        A release whose ``release.json`` cannot be read is left out and
        logged, so one damaged release does not hide the others.
        """
        summaries = []
        for version, folder in sorted(self._release_dirs().items()):
            try:
                info = self._read_json(folder / RELEASE_FILE)
            except HttpError as e:
                logger.warning("leaving release %s out of the list: %s", version, e)
                continue
            summaries.append(
                {
                    "version": str(version),
                    "previous_version": info.get("previous_version"),
                    "file_count": info.get("file_count"),
                    "total_bytes": info.get("total_bytes"),
                }
            )
        return summaries

    def release_info(self, version: Version) -> Any:
        """Return the content of a release's ``release.json``.

        Raises:
            HttpError: 404 for an unknown version, 500 for a damaged file.
        """
        return self._read_json(self._release_dir(version) / RELEASE_FILE)

    def release_info_body(self, version: Version) -> JsonBody:
        """Return :meth:`release_info` encoded, encoding it once per file change.

        Raises:
            HttpError: As :meth:`release_info`.
        """
        return self._read_body(self._release_dir(version) / RELEASE_FILE)

    def manifest(self, version: Version) -> Any:
        """Return a release's manifest, reduced to the legacy keys in legacy mode.

        Raises:
            HttpError: 404 for an unknown version, 500 for a damaged file.
        """
        document = self._read_json(self._release_dir(version) / MANIFEST_FILE)
        if self.legacy:
            return legacy_manifest(document)
        return document

    def manifest_body(self, version: Version) -> JsonBody:
        """Return :meth:`manifest` encoded, encoding it once per file change.

        A manifest of 20,000 files is about 3 MB, so encoding it for every
        request would cost more than sending it.

        Raises:
            HttpError: As :meth:`manifest`.
        """
        reduce = legacy_manifest if self.legacy else None
        return self._read_body(self._release_dir(version) / MANIFEST_FILE, reduce)

    def open_file(self, version: Version, release_path: str) -> OpenedFile:
        """Open a file of a release without leaving the release's file tree.

        No symbolic link is followed inside the tree, so a link planted there
        cannot expose a file outside it.

        Args:
            version: The release version.
            release_path: A path already accepted by ``validate_release_path``.

        Raises:
            HttpError: 404 for an unknown version, a missing file, a folder, a
                special file or a symbolic link on the way.
        """
        files_root = self._release_dir(version) / FILES_DIR
        parts = PurePosixPath(release_path).parts
        try:
            fd = _open_beneath(files_root, parts)
        except OSError as e:
            logger.debug("cannot open %r in %s: %s", release_path, files_root, e)
            raise _file_not_found(version, release_path) from e

        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise _file_not_found(version, release_path)

        _clear_nonblocking(fd)
        return OpenedFile(
            file=os.fdopen(fd, "rb", buffering=0),
            size=info.st_size,
            etag=f'"{info.st_size:x}-{info.st_mtime_ns:x}"',
            mtime=info.st_mtime,
        )

    def _release_dirs(self) -> dict[Version, Path]:
        """Return the release folders by version, listed again when the folder changed.

        Adding, removing or renaming a release folder changes the modification
        time of the releases folder, so the listing is kept while it stays the
        same. A listing taken within :data:`RACY_SECONDS` of that time is not
        kept, because a second change in the same clock tick would keep it.
        """
        try:
            info = os.stat(self.root)
        except OSError:
            return self._scan_release_dirs()

        key = (info.st_dev, info.st_ino, info.st_mtime_ns)
        cached = self._dirs_cache
        if cached is not None and cached[0] == key:
            return cached[1]

        found = self._scan_release_dirs()
        if time.time_ns() - info.st_mtime_ns > RACY_SECONDS * 1e9:
            self._dirs_cache = (key, found)
        return found

    def _scan_release_dirs(self) -> dict[Version, Path]:
        try:
            entries = list(os.scandir(self.root))
        except OSError as e:
            logger.error("cannot list releases in %s: %s", self.root, e)
            return {}

        found: dict[Version, Path] = {}
        for entry in sorted(entries, key=lambda item: item.name):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                version = parse_version(entry.name)
            except UsageError:
                logger.debug("ignoring %s: not a version folder", entry.path)
                continue
            # A canonical name ("3.0.0") wins over an equal one ("3.0.0.0").
            if version not in found or entry.name == str(version):
                found[version] = Path(entry.path)
        return found

    def _release_dir(self, version: Version) -> Path:
        folder = self._release_dirs().get(version)
        if folder is None:
            raise HttpError(
                HTTPStatus.NOT_FOUND,
                f"release {version} not found; GET /releases lists the versions",
            )
        return folder

    def _read_json(self, path: Path) -> Any:
        return self._load(path).document

    def _read_body(
        self, path: Path, reduce: Callable[[Any], Any] | None = None
    ) -> JsonBody:
        cached = self._load(path)
        body = cached.body
        if body is None:
            # Two threads may both encode a new document; either result is right.
            document = cached.document if reduce is None else reduce(cached.document)
            body = cached.body = encode_body(document)
        return body

    def _load(self, path: Path) -> _Cached:
        try:
            info = path.stat()
            key = (info.st_mtime_ns, info.st_size)
            with self._cache_lock:
                cached = self._cache.get(path)
            if cached is not None and cached.key == key:
                return cached
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as e:
            logger.error("cannot read %s: %s", path, e)
            raise HttpError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"release data {path.parent.name}/{path.name} is missing or "
                f"damaged on the server",
            ) from e

        cached = _Cached(key, document)
        with self._cache_lock:
            self._cache[path] = cached
        return cached


def legacy_manifest(document: dict[str, Any]) -> dict[str, Any]:
    """Reduce a full manifest to what the legacy middleware serves.

    The result has no ``files`` listing and no hashes: the incremental lists
    hold plain paths only.
    """
    legacy = {key: document.get(key) for key in LEGACY_MANIFEST_KEYS}
    codebase = document.get("codebase") or {}
    legacy["codebase"] = {
        key: [_plain_path(entry) for entry in codebase.get(key) or []]
        for key in _LIST_KEYS
    }
    return legacy


def _plain_path(entry: Any) -> Any:
    if isinstance(entry, dict):
        return entry.get("path")
    return entry


def _file_not_found(version: Version, release_path: str) -> HttpError:
    return HttpError(
        HTTPStatus.NOT_FOUND,
        f"file {release_path!r} not found in release {version}",
    )


def _open_beneath(root: Path, parts: tuple[str, ...]) -> int:
    """Open ``root/parts...`` for reading, rejecting symbolic links on the way.

    Raises:
        OSError: If a part is missing, is a symbolic link, or cannot be opened.
    """
    if os.open not in os.supports_dir_fd:
        return _open_beneath_by_lstat(root, parts)

    dir_fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _open_beneath_by_lstat(root: Path, parts: tuple[str, ...]) -> int:
    # NOTE: without dir_fd support (Windows), a part swapped for a link between
    # this check and the open is not caught. Served trees must not change.
    current = root
    for part in parts:
        current = current / part
        if stat.S_ISLNK(os.lstat(current).st_mode):
            raise OSError(f"{current} is a symbolic link")
    return os.open(current, _FILE_FLAGS)


def _clear_nonblocking(fd: int) -> None:
    if getattr(os, "O_NONBLOCK", 0):
        os.set_blocking(fd, True)
