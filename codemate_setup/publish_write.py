"""Release folder writer for :mod:`codemate_setup.publish`.

It copies the source files into a hidden temporary folder, hashing them as it
copies, writes ``manifest.json`` and ``release.json`` next to them, and renames
the folder into place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from packaging.version import Version

from codemate_setup.errors import SetupError, UsageError
from codemate_setup.fsutil import atomic_write_json, fsync_dir
from codemate_setup.publish_manifest import MANIFEST_FILE, build_manifest
from codemate_setup.source_tree import SourceFile

logger = logging.getLogger(__name__)

RELEASE_FILE = "release.json"
FILES_DIR = "files"

COPY_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class PublishResult:
    """Location, counts and manifest of a newly published release."""

    version: str
    release_dir: Path
    previous_version: str | None
    manifest: dict[str, Any]
    file_count: int
    total_bytes: int


def write_release(
    releases_root: Path,
    version: Version,
    files: Sequence[SourceFile],
    *,
    previous_version: str | None,
    previous_files: Mapping[str, Mapping[str, Any]],
    requirements: str | None,
    entry_point: str | None,
    durable: bool,
) -> PublishResult:
    """Write release ``version`` with ``files`` into ``releases_root``.

    Raises:
        UsageError: If a source file stopped being a regular file, or another
            process published the same version meanwhile.
        SetupError: If writing fails.

    Before either error is raised, the temporary folder is deleted, ignoring
    any error of that delete.
    """
    final_dir = releases_root / str(version)
    try:
        temp_dir = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=releases_root))
    except OSError as e:
        raise SetupError(
            f"failed to create a folder in {releases_root}: {e.strerror or e}; "
            f"nothing was published"
        ) from e

    try:
        listing = _store_files(temp_dir / FILES_DIR, files, durable)

        manifest = build_manifest(
            str(version),
            previous_version,
            listing,
            previous_files,
            requirements,
            entry_point,
        )
        total_bytes = sum(entry["size"] for entry in listing)
        info = {
            "version": str(version),
            "previous_version": previous_version,
            "published_at": datetime.now(timezone.utc).isoformat(),
            "file_count": len(listing),
            "total_bytes": total_bytes,
            "entry_point": entry_point,
            "requirements": requirements,
        }
        for name, document in ((MANIFEST_FILE, manifest), (RELEASE_FILE, info)):
            atomic_write_json(temp_dir / name, document, durable=durable)
            os.chmod(temp_dir / name, 0o644)
        os.chmod(temp_dir, 0o755)

        _rename_into_place(temp_dir, final_dir)
    except OSError as e:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise SetupError(
            f"failed to write release {version} in {releases_root}: "
            f"{e.strerror or e}; nothing was published"
        ) from e
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise

    if durable:
        fsync_dir(releases_root)

    logger.info("published %s to %s", version, final_dir)
    return PublishResult(
        version=str(version),
        release_dir=final_dir,
        previous_version=previous_version,
        manifest=manifest,
        file_count=len(listing),
        total_bytes=total_bytes,
    )


def _rename_into_place(temp_dir: Path, final_dir: Path) -> None:
    # A rename onto an existing folder fails, so a concurrent publish of the
    # same version cannot be overwritten.
    try:
        os.rename(temp_dir, final_dir)
    except OSError as e:
        if final_dir.exists():
            raise UsageError(
                f"release {final_dir.name} was published by another process "
                f"meanwhile, at {final_dir}; nothing was written"
            ) from e
        raise SetupError(
            f"failed to move the new release into {final_dir}: {e}; "
            f"nothing was published"
        ) from e


def _store_files(
    files_root: Path, files: Sequence[SourceFile], durable: bool
) -> list[dict[str, Any]]:
    folders = {files_root}
    files_root.mkdir()
    listing = []
    for item in files:
        target = files_root.joinpath(*item.path.split("/"))
        if target.parent not in folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            folders.update([target.parent, *target.parent.parents])
        listing.append(_store_file(item, target, durable))

    if durable:
        for folder in folders:
            if folder == files_root or files_root in folder.parents:
                fsync_dir(folder)
    return listing


def _store_file(item: SourceFile, target: Path, durable: bool) -> dict[str, Any]:
    """Copy one file, hashing the bytes as they are written.

    The hash is taken from the copied bytes, so the manifest matches the
    stored file even if the source changes during the publish.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
        if not item.follow_link:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(item.source, flags), "rb") as source:
            if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
                raise UsageError(
                    f"{item.path!r} is no longer a regular file; publish again"
                )
            with open(target, "xb") as output:
                while chunk := source.read(COPY_CHUNK_BYTES):
                    digest.update(chunk)
                    output.write(chunk)
                    size += len(chunk)
                if durable:
                    output.flush()
                    os.fsync(output.fileno())
    except OSError as e:
        raise SetupError(
            f"failed to copy {item.path!r} from {item.source}: {e.strerror or e}; "
            f"nothing was published"
        ) from e

    os.chmod(target, int(item.mode, 8))
    return {
        "path": item.path,
        "sha256": digest.hexdigest(),
        "size": size,
        "mode": item.mode,
    }
