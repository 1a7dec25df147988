"""Publish a source tree as a release that the reference middleware serves.

``python -m codemate_setup.publish SRC_DIR --version 3.0.0 --to RELEASES_DIR``
writes ``RELEASES_DIR/3.0.0/`` with ``release.json``, ``manifest.json`` and the
file tree under ``files/``. The release is built in a hidden temporary folder
and renamed into place, so a failed or interrupted publish leaves no release.

What a source tree may contain:

- Regular files only. Symbolic links and special files (FIFOs, sockets,
  devices) are rejected, each one named, because the release format stores
  file contents only and a link may point outside the tree.
- Empty folders are not published, because the manifest lists files.
- File modes are normalized as git does: ``0755`` when the owner may execute
  the file, ``0644`` otherwise, so the umask of the publishing machine does
  not leak into the release.
- Two paths that differ only in letter case or Unicode normalization are
  rejected, because they collide on case-insensitive file systems (Windows,
  and macOS by default).
- Names must be valid UTF-8 and valid on Windows: none of ``<>:"|?*``, no
  trailing dot or space, no reserved device name such as ``CON``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from packaging.version import Version

from codemate_setup.errors import ExitCode, ManifestError, SetupError, UsageError
from codemate_setup.fsutil import atomic_write_json, fsync_dir
from codemate_setup.source_tree import (
    SourceFile,
    scan_source_tree,
)
from codemate_setup.versions import parse_version

logger = logging.getLogger(__name__)

RELEASE_FILE = "release.json"
MANIFEST_FILE = "manifest.json"
FILES_DIR = "files"
REQUIREMENTS_NAME = "requirements.txt"
DEFAULT_ENTRY_POINT = "initiate.py"

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


def publish_release(
    source_dir: str | Path,
    version: str,
    releases_dir: str | Path,
    *,
    requirements: str | Path | None = None,
    entry_point: str | None = None,
    durable: bool = True,
) -> PublishResult:
    """Publish ``source_dir`` as release ``version`` under ``releases_dir``.

    Every check runs before anything is written. On any error the releases
    folder is left as it was (and removed again if this call created it).

    Args:
        source_dir: The tree to publish.
        version: The release version, such as ``3.0.0`` or ``v3.0.0``.
        releases_dir: The folder of releases; created if missing.
        requirements: A requirements file to publish as ``requirements.txt``
            at the release root, replacing one in the tree. Without it a
            ``requirements.txt`` at the tree's root is used when present.
        entry_point: Release path of the entry point. Without it
            ``initiate.py`` is used when the tree's root has one.
        durable: Fsync every written file and folder; turn off only for
            throwaway releases in tests.

    Returns:
        What was written.

    Raises:
        UsageError: For an invalid version, a missing source folder or
            requirements file, a version already published, an unknown entry
            point, or entries that cannot be published.
        ManifestError: If the earlier release's manifest cannot be read.
        SetupError: If writing the release fails.
    """
    parsed = parse_version(version)
    source_root = _check_source_dir(source_dir)
    releases_root = Path(releases_dir)
    _check_not_nested(source_root, releases_root)
    existing = _existing_releases(releases_root)
    if parsed in existing:
        raise UsageError(
            f"version {version!r} is already published at {existing[parsed]}; "
            f"publish a new version, or delete that folder first to replace it"
        )

    files = scan_source_tree(source_root)
    files = _with_requirements_file(files, requirements)
    requirements_path = (
        REQUIREMENTS_NAME if _has_path(files, REQUIREMENTS_NAME) else None
    )
    entry = _choose_entry_point(files, entry_point)

    previous = _previous_release(existing, parsed)
    previous_files = _load_listing(*previous) if previous else {}

    created_root = not releases_root.exists()
    try:
        releases_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SetupError(
            f"failed to create the releases folder {releases_root}: "
            f"{e.strerror or e}; check its parent folder's permissions"
        ) from e

    try:
        return _write_release(
            releases_root,
            parsed,
            files,
            previous_version=str(previous[0]) if previous else None,
            previous_files=previous_files,
            requirements=requirements_path,
            entry_point=entry,
            durable=durable,
        )
    except BaseException:
        if created_root:
            shutil.rmtree(releases_root, ignore_errors=True)
        raise


def _check_source_dir(source_dir: str | Path) -> Path:
    root = Path(source_dir)
    if not root.exists():
        raise UsageError(
            f"source folder {str(root)!r} not found; pass the folder to publish"
        )
    if not root.is_dir():
        raise UsageError(f"source {str(root)!r} must be a folder, found a file")
    return root


def _check_not_nested(source_root: Path, releases_root: Path) -> None:
    # Earlier releases inside the tree would be published as part of it.
    real_source = Path(os.path.realpath(source_root))
    real_releases = Path(os.path.realpath(releases_root))
    if real_releases == real_source or real_source in real_releases.parents:
        raise UsageError(
            f"releases folder {str(releases_root)!r} must be outside the source "
            f"folder {str(source_root)!r}; choose another --to folder"
        )


def _existing_releases(releases_root: Path) -> dict[Version, Path]:
    if not releases_root.exists():
        return {}
    if not releases_root.is_dir():
        raise UsageError(
            f"releases folder {str(releases_root)!r} must be a folder, found a file"
        )

    found = {}
    for entry in os.scandir(releases_root):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            found[parse_version(entry.name)] = Path(entry.path)
        except UsageError:
            logger.debug("ignoring %s: not a version folder", entry.path)
    return found


def _with_requirements_file(
    files: list[SourceFile], requirements: str | Path | None
) -> list[SourceFile]:
    if requirements is None:
        return files

    source = Path(requirements)
    if not source.is_file():
        raise UsageError(
            f"requirements file {str(source)!r} not found; pass an existing file "
            f"to --requirements"
        )

    logger.debug("publishing %s as %s", source, REQUIREMENTS_NAME)
    other_files = [item for item in files if item.path != REQUIREMENTS_NAME]
    other_files.append(SourceFile(REQUIREMENTS_NAME, source, "0644", follow_link=True))
    return sorted(other_files, key=lambda item: item.path)


def _has_path(files: Sequence[SourceFile], path: str) -> bool:
    return any(item.path == path for item in files)


def _choose_entry_point(
    files: Sequence[SourceFile], entry_point: str | None
) -> str | None:
    if entry_point is None:
        return DEFAULT_ENTRY_POINT if _has_path(files, DEFAULT_ENTRY_POINT) else None

    if not _has_path(files, entry_point):
        raise UsageError(
            f"entry point {entry_point!r} not found in the source tree; pass the "
            f"release path of a file, such as {DEFAULT_ENTRY_POINT!r}"
        )
    return entry_point


def _previous_release(
    existing: Mapping[Version, Path], version: Version
) -> tuple[Version, Path] | None:
    earlier = [item for item in existing.items() if item[0] < version]
    return max(earlier) if earlier else None


def _load_listing(version: Version, folder: Path) -> dict[str, dict[str, Any]]:
    manifest_path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_bytes())
        return {entry["path"]: entry for entry in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ManifestError(
            f"cannot read the files listing of earlier release {version} at "
            f"{manifest_path} ({e}); repair or remove that release and publish again"
        ) from e


def diff_listings(
    previous: Mapping[str, Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> dict[str, list[str]]:
    """Compute the incremental lists from the previous listing to the current one.

    A file whose content or mode changed is an edit. A file replaced by a
    folder is a delete of the file plus adds of the folder's files.

    Returns:
        ``files_add``, ``files_edit`` and ``files_delete``, each sorted.
    """
    current_by_path = {entry["path"]: entry for entry in current}
    added = [path for path in current_by_path if path not in previous]
    deleted = [path for path in previous if path not in current_by_path]
    edited = [
        path
        for path, entry in current_by_path.items()
        if path in previous
        and (
            previous[path].get("sha256") != entry["sha256"]
            or previous[path].get("mode") != entry["mode"]
        )
    ]
    return {
        "files_add": sorted(added),
        "files_edit": sorted(edited),
        "files_delete": sorted(deleted),
    }


def build_manifest(
    version: str,
    previous_version: str | None,
    listing: Sequence[Mapping[str, Any]],
    previous_files: Mapping[str, Mapping[str, Any]],
    requirements: str | None,
    entry_point: str | None,
) -> dict[str, Any]:
    """Assemble the manifest. Equal inputs give an equal document."""
    return {
        "version": version,
        "previous_version": previous_version,
        "codebase": diff_listings(previous_files, listing),
        "files": sorted((dict(entry) for entry in listing), key=lambda e: e["path"]),
        "requirements": requirements,
        "entry_point": entry_point,
    }


def _write_release(
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


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m codemate_setup.publish",
        description="Publish a source tree as a CodeMate release.",
        epilog="Exit codes: 0 published, 1 writing failed, 2 invalid input.",
    )
    parser.add_argument("source_dir", metavar="SRC_DIR", help="the tree to publish")
    parser.add_argument(
        "--version", required=True, help="release version, such as 3.0.0"
    )
    parser.add_argument(
        "--to",
        dest="releases_dir",
        required=True,
        metavar="RELEASES_DIR",
        help="folder of releases; created if missing",
    )
    parser.add_argument(
        "--requirements",
        metavar="FILE",
        help="publish FILE as requirements.txt at the release root "
        "(default: the tree's own requirements.txt, if any)",
    )
    parser.add_argument(
        "--entry-point",
        metavar="PATH",
        help=f"release path of the entry point (default: {DEFAULT_ENTRY_POINT} "
        f"when present)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every step")
    return parser


def run(args: argparse.Namespace) -> ExitCode:
    """Publish and print a one-line summary.

    Raises:
        SetupError: For every rejection and failure of :func:`publish_release`.
    """
    result = publish_release(
        args.source_dir,
        args.version,
        args.releases_dir,
        requirements=args.requirements,
        entry_point=args.entry_point,
    )
    codebase = result.manifest["codebase"]
    print(
        f"published {result.version} to {result.release_dir}: "
        f"{result.file_count} files, {result.total_bytes} bytes; "
        f"against {result.previous_version or 'no earlier release'}: "
        f"{len(codebase['files_add'])} added, {len(codebase['files_edit'])} "
        f"edited, {len(codebase['files_delete'])} deleted"
    )
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, publish, and return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    try:
        return int(run(args))
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        logger.debug("publish failed", exc_info=True)
        return int(e.exit_code)


if __name__ == "__main__":
    sys.exit(main())
