"""Validation of release-relative paths taken from manifests and URLs.

A release path is a relative POSIX path such as ``pkg/main.py``. Everything a
server sends is checked here before it is joined to a folder on disk.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from codemate_setup.errors import ManifestError

# Maximum length of a release path, in characters. Linux allows paths of 4096 bytes.
MAX_PATH_LENGTH = 1024

_DRIVE_PREFIX = re.compile(r"^[A-Za-z]:")
# NUL and the other C0 control characters, and DEL.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def validate_release_path(path: object) -> str:
    """Check that a manifest path is safe to join to the install folder.

    The path must be a non-empty relative POSIX path in normal form: no ``..``
    or ``.`` parts, no empty parts, no leading ``/``, no drive letter or UNC
    prefix, no backslash, no NUL or other control character.

    Args:
        path: The value taken from a manifest or a URL.

    Returns:
        The path, unchanged.

    Raises:
        ManifestError: Naming the path and the rule it breaks.
    """
    if not isinstance(path, str):
        raise ManifestError(f"manifest path must be a string, got {path!r}")

    reason = _path_problem(path)
    if reason is not None:
        raise ManifestError(f"unsafe manifest path {path!r}: {reason}")

    return path


def _path_problem(path: str) -> str | None:
    if not path:
        return "the path is empty"

    if len(path) > MAX_PATH_LENGTH:
        return f"longer than {MAX_PATH_LENGTH} characters"

    if _CONTROL_CHARACTER.search(path):
        return "contains a NUL or control character"

    if "\\" in path:
        return "contains a backslash"

    if path.startswith("/"):
        return "must be relative"

    if _DRIVE_PREFIX.match(path):
        return "starts with a drive letter"

    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "must be normalized, without empty, '.' or '..' parts"

    return None


def resolve_inside(
    root: Path, release_path: str, *, realpaths: dict[Path, Path] | None = None
) -> Path:
    """Join a validated release path to ``root`` and prove it stays inside.

    Existing symlinks along the way are followed, so a link in the install
    folder that points elsewhere cannot redirect a write.

    Args:
        root: The folder the path is relative to; it may not exist yet.
        release_path: A path already accepted by :func:`validate_release_path`.
        realpaths: A cache of resolved folders, for callers that check many
            paths while the tree does not change. Without it every call
            resolves the folders again.

    Returns:
        The joined path (not resolved, so the final component may be a link
        that the caller replaces).

    Raises:
        ManifestError: If the resolved path leaves ``root``.
    """
    validate_release_path(release_path)
    target = root.joinpath(*PurePosixPath(release_path).parts)

    real_root = _realpath(root, realpaths)
    real_parent = _realpath(target.parent, realpaths)
    if real_parent != real_root and real_root not in real_parent.parents:
        raise ManifestError(
            f"unsafe manifest path {release_path!r}: it resolves outside "
            f"{root} through a symbolic link"
        )

    return target


def _realpath(folder: Path, cache: dict[Path, Path] | None) -> Path:
    if cache is None:
        return Path(os.path.realpath(folder))

    resolved = cache.get(folder)
    if resolved is None:
        resolved = Path(os.path.realpath(folder))
        cache[folder] = resolved
    return resolved
