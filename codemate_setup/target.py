"""The files of the version an update installs, from its manifests.

A release with a full ``files`` listing defines its files on its own. Legacy
releases list only their changes, so the files of a target version are the
installed files with the changes of every release up to the target applied in
order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import repeat
from typing import NamedTuple

from packaging.version import Version

from codemate_setup.errors import ManifestError
from codemate_setup.listing import InstalledFile
from codemate_setup.manifest import Manifest, ManifestEntry, check_layout
from codemate_setup.records import make_records


class TargetFile(NamedTuple):
    """A file the target version contains and the release to fetch it from.

    A named tuple, like :class:`~codemate_setup.manifest.ManifestEntry`,
    because the target state has one per file of the release.
    """

    path: str
    version: Version
    sha256: str | None
    size: int | None
    mode: int | None


@dataclass(frozen=True)
class TargetState:
    """Every file of the target version, with the release metadata.

    ``deleted`` contains the paths that legacy manifests delete explicitly.
    It matters only when no installed listing records which files are owned.
    """

    version: Version
    files: Mapping[str, TargetFile]
    requirements: str | None = None
    entry_point: str | None = None
    deleted: frozenset[str] = frozenset()


class ChangeKind(str, Enum):
    """The relation of the target version to the installed one."""

    INSTALL = "install"
    SAME = "same"
    UPGRADE = "upgrade"
    MAJOR_UPGRADE = "major_upgrade"
    DOWNGRADE = "downgrade"


def classify_change(installed: Version | None, target: Version) -> ChangeKind:
    """Classify an update from ``installed`` (None when nothing is) to ``target``."""
    if installed is None:
        return ChangeKind.INSTALL
    if target == installed:
        return ChangeKind.SAME
    if target < installed:
        return ChangeKind.DOWNGRADE
    if target.major > installed.major:
        return ChangeKind.MAJOR_UPGRADE
    return ChangeKind.UPGRADE


def legacy_chain(
    available: Iterable[Version], installed: Version | None, target: Version
) -> list[Version]:
    """Return the releases whose incremental manifests lead to ``target``.

    With nothing installed the chain starts at the first release, whose
    manifest adds every file of that release.

    Raises:
        ManifestError: If ``target`` is not among ``available``.
    """
    versions = sorted(set(available))
    if target not in versions:
        raise ManifestError(f"release {target} is not in the release list")

    return [
        version
        for version in versions
        if version <= target and (installed is None or version > installed)
    ]


def fold_manifests(
    chain: Sequence[Manifest],
    installed_files: Mapping[str, InstalledFile] | None = None,
    installed_version: Version | None = None,
) -> TargetState:
    """Combine a chain of manifests into the target version's files.

    A manifest with a full listing replaces everything before it; a legacy
    manifest applies its deletes, then its adds and edits. Files the chain
    never touches are carried over from the installed listing.

    Args:
        chain: Validated manifests in version order; the last is the target.
        installed_files: The installed listing's files, if any.
        installed_version: The version those files belong to.

    Raises:
        ManifestError: If the chain is empty or leaves a path that is both a
            file and a folder.
    """
    if not chain:
        raise ManifestError("no manifest leads to the requested version")

    files: dict[str, TargetFile] = {}
    if installed_files and installed_version is not None:
        for path, entry in installed_files.items():
            files[path] = TargetFile(
                path, installed_version, entry.sha256, entry.size, entry.mode
            )

    deleted: set[str] = set()
    for manifest in chain:
        if manifest.files is not None:
            files = _listed_files(manifest)
            deleted = set()
            continue

        for path in manifest.deleted:
            files.pop(path, None)
            deleted.add(path)
        for entry in (*manifest.added, *manifest.edited):
            files[entry.path] = _target(manifest, entry)
            deleted.discard(entry.path)

    last = chain[-1]
    try:
        # The parser checked the layout of a full listing. Only files that
        # incremental lists added to or kept from earlier ones need it here.
        if not last.is_full:
            check_layout(files)
    except ValueError as e:
        raise ManifestError(
            f"the manifests from {chain[0].version} to {last.version} are "
            f"inconsistent: {e}"
        ) from e

    return TargetState(
        version=last.version,
        files=files,
        requirements=last.requirements,
        entry_point=last.entry_point,
        deleted=frozenset(deleted),
    )


def _listed_files(manifest: Manifest) -> dict[str, TargetFile]:
    """Return the files of a full listing, built a field at a time."""
    if not manifest.files:
        return {}
    paths, hashes, sizes, modes = zip(*manifest.files, strict=True)
    rows = zip(paths, repeat(manifest.version), hashes, sizes, modes, strict=False)
    return dict(zip(paths, make_records(TargetFile, rows), strict=True))


def _target(manifest: Manifest, entry: ManifestEntry) -> TargetFile:
    return TargetFile(
        entry.path, manifest.version, entry.sha256, entry.size, entry.mode
    )
