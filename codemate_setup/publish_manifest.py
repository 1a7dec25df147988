"""Manifest of a release that :mod:`codemate_setup.publish` writes.

Its functions choose the earlier release, read that release's files listing,
and build ``manifest.json`` with the lists of files added, edited and deleted
since that release.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.version import Version

from codemate_setup.errors import ManifestError

MANIFEST_FILE = "manifest.json"


def previous_release(
    existing: Mapping[Version, Path], version: Version
) -> tuple[Version, Path] | None:
    """Return the newest release in ``existing`` older than ``version``, or None."""
    earlier = [item for item in existing.items() if item[0] < version]
    return max(earlier) if earlier else None


def load_listing(version: Version, folder: Path) -> dict[str, dict[str, Any]]:
    """Read the files listing of the release in ``folder``, keyed by path.

    Raises:
        ManifestError: If its manifest cannot be read or parsed, or its files
            list is missing or invalid.
    """
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
