"""Publish a source tree as a release that the reference middleware serves.

``python -m codemate_setup.publish SRC_DIR --version 3.0.0 --to RELEASES_DIR``
writes ``RELEASES_DIR/3.0.0/`` with ``release.json``, ``manifest.json`` and the
file tree under ``files/``. The release is built in a hidden temporary folder
and renamed into place, so a failed or interrupted publish leaves no release.
This module checks the input and contains the command line, while
:mod:`codemate_setup.publish_manifest` builds the manifest and
:mod:`codemate_setup.publish_write` writes the release folder.

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
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from packaging.version import Version

from codemate_setup.errors import ExitCode, SetupError, UsageError
from codemate_setup.publish_manifest import load_listing, previous_release
from codemate_setup.publish_write import PublishResult, write_release
from codemate_setup.source_tree import (
    SourceFile,
    scan_source_tree,
)
from codemate_setup.versions import parse_version

logger = logging.getLogger(__name__)

REQUIREMENTS_NAME = "requirements.txt"
DEFAULT_ENTRY_POINT = "initiate.py"


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

    previous = previous_release(existing, parsed)
    previous_files = load_listing(*previous) if previous else {}

    created_root = not releases_root.exists()
    try:
        releases_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SetupError(
            f"failed to create the releases folder {releases_root}: "
            f"{e.strerror or e}; check its parent folder's permissions"
        ) from e

    try:
        return write_release(
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
