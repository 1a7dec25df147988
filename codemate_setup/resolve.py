"""Resolve the target version's files from the middleware's manifests.

A target whose manifest has a full ``files`` listing needs that manifest
alone. A legacy target (incremental lists only) needs the manifests of every
release after the installed version up to the target, applied in version
order. When that chain cannot be followed, every release up to the target is
applied from the first one, which installs the target in full.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from packaging.version import Version

from codemate_setup.config import Limits
from codemate_setup.errors import UsageError
from codemate_setup.listing import InstalledFile, InstalledListing
from codemate_setup.manifest import Manifest, parse_manifest
from codemate_setup.target import TargetFile, TargetState, fold_manifests, legacy_chain
from codemate_setup.versions import parse_version

logger = logging.getLogger(__name__)

# Mode assumed for a file whose manifest entry gives none.
DEFAULT_FILE_MODE = 0o644

# Versions named in the "not found" message; the full list is --list.
MAX_VERSIONS_SHOWN = 10

FetchManifest = Callable[[Version], object]


@dataclass(frozen=True)
class ResolvedTarget:
    """The target's files and how they were found.

    ``fallback`` is a sentence describing a change of method that changes what
    the user gets, or None.
    """

    state: TargetState
    manifests: tuple[Version, ...]
    legacy: bool
    fallback: str | None = None


def release_versions(entries: Sequence[dict]) -> list[Version]:
    """Return the sorted versions of a release list from the middleware."""
    return sorted({parse_version(str(entry["version"])) for entry in entries})


def require_published(versions: Sequence[Version], target: Version, url: str) -> None:
    """Check that the middleware offers ``target``.

    Raises:
        UsageError: Naming the missing version and some that exist.
    """
    if target in versions:
        return
    shown = ", ".join(str(v) for v in versions[-MAX_VERSIONS_SHOWN:]) or "none"
    raise UsageError(
        f"release {target} not found on the middleware at {url} (latest releases: "
        f"{shown}); run update.py --list to see every available version"
    )


def resolve_target(
    fetch: FetchManifest,
    versions: Sequence[Version],
    target: Version,
    installed: Version | None,
    listing: InstalledListing | None,
    limits: Limits,
) -> ResolvedTarget:
    """Fetch and validate the manifests that define the target version's files.

    Args:
        fetch: Returns the raw manifest document of one release.
        versions: Every release the middleware offers.
        target: The version to install.
        installed: The installed version, or None.
        listing: The installed listing, used for files a legacy chain keeps.
        limits: Bounds on manifest content.

    Raises:
        ManifestError: If a manifest is invalid or the chain is inconsistent.
        MiddlewareError: If a manifest cannot be fetched.
    """
    manifest = _fetch(fetch, target, limits)
    if manifest.is_full:
        return ResolvedTarget(fold_manifests([manifest]), (target,), legacy=False)

    if installed == target:
        return ResolvedTarget(_same_version_state(manifest, listing), (), legacy=True)

    fallback = None
    if installed is not None and (installed not in versions or installed > target):
        reason = (
            f"{installed} is not in the middleware's release list"
            if installed not in versions
            else f"{target} is older than {installed}"
        )
        fallback = (
            f"the incremental manifests cannot lead from {installed} to {target} "
            f"({reason}); applying every release up to {target} from the first one"
        )
        logger.warning(fallback)
        installed = None

    chain_versions = legacy_chain(versions, installed, target)
    chain: list[Manifest] = [
        manifest if version == target else _fetch(fetch, version, limits)
        for version in chain_versions
    ]
    carried = listing.files if listing is not None and installed is not None else None
    state = fold_manifests(chain, carried, installed)
    logger.debug("legacy chain for %s: %s", target, [str(v) for v in chain_versions])
    return ResolvedTarget(state, tuple(chain_versions), legacy=True, fallback=fallback)


def _fetch(fetch: FetchManifest, version: Version, limits: Limits) -> Manifest:
    return parse_manifest(fetch(version), expected_version=version, limits=limits)


def _same_version_state(
    manifest: Manifest, listing: InstalledListing | None
) -> TargetState:
    """Describe an installed legacy version by its listing.

    Legacy manifests carry no hashes, so only the listing records what the
    installed version's files should be.
    """
    files = {}
    if listing is not None:
        files = {
            path: TargetFile(
                path, manifest.version, entry.sha256, entry.size, entry.mode
            )
            for path, entry in listing.files.items()
        }
    return TargetState(
        version=manifest.version,
        files=files,
        requirements=manifest.requirements,
        entry_point=manifest.entry_point,
    )


def listing_from_manifest(
    document: object, version: Version, limits: Limits
) -> InstalledListing | None:
    """Build a stand-in installed listing from a release's full manifest.

    Its ``mtime_ns`` values are -1, which no file has, so every listed file
    is hashed before it is trusted.

    Returns:
        The listing, or None for a legacy manifest, which does not list
        every file.

    Raises:
        ManifestError: If the manifest is invalid.
    """
    manifest = parse_manifest(document, expected_version=version, limits=limits)
    if manifest.files is None:
        return None
    files = {
        entry.path: InstalledFile(
            sha256=entry.sha256 or "",
            size=entry.size if entry.size is not None else -1,
            mode=entry.mode if entry.mode is not None else DEFAULT_FILE_MODE,
            mtime_ns=-1,
        )
        for entry in manifest.files
    }
    return InstalledListing(
        version=str(version),
        files=files,
        entry_point=manifest.entry_point,
        requirements=manifest.requirements,
    )
