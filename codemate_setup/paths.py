"""Validation of release-relative paths taken from manifests and URLs.

A release path is a relative POSIX path such as ``pkg/main.py``. Everything a
server sends is checked here before it is joined to a folder on disk.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from codemate_setup.errors import ManifestError

# Maximum length of a release path, in characters. Linux allows paths of 4096 bytes.
MAX_PATH_LENGTH = 1024

_DRIVE_PREFIX = re.compile(r"^[A-Za-z]:")
# NUL and the other C0 control characters, and DEL.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
# Every rule of ``_path_problem`` as one pattern, so a safe path is accepted in
# one match: parts without a slash, backslash or control character, none of
# them "." or "..", and no drive letter in front. A path it does not match goes
# through the rules one by one, which name the rule it breaks. A part also ends
# at a line break, so the second pattern checks paths joined by line breaks.
# No safe path contains one.
_PART = r"(?!\.\.?(?:/|\n|\Z))[^/\\\x00-\x1f\x7f]+"
_PATH = rf"(?![A-Za-z]:){_PART}(?:/{_PART})*"
_SAFE_PATH = re.compile(_PATH)
_SAFE_PATH_LINES = re.compile(rf"{_PATH}(?:\n{_PATH})*")


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
    if (
        type(path) is str
        and len(path) <= MAX_PATH_LENGTH
        and _SAFE_PATH.fullmatch(path)
    ):
        return path

    if not isinstance(path, str):
        raise ManifestError(f"manifest path must be a string, got {path!r}")

    reason = _path_problem(path)
    if reason is not None:
        raise ManifestError(f"unsafe manifest path {path!r}: {reason}")

    return path


def validate_release_paths(paths: Sequence[object]) -> None:
    """Check many paths as :func:`validate_release_path` checks each one.

    All of them are matched at once, which costs a fraction of a check per
    path. Only when that fails are they checked one by one, for the message.

    Args:
        paths: The values taken from a manifest or a listing.

    Raises:
        ManifestError: Naming the first unsafe path and the rule it breaks.
    """
    if release_paths_are_safe(paths):
        return

    for path in paths:
        validate_release_path(path)


def release_paths_are_safe(paths: Sequence[object]) -> bool:
    """Tell whether every path passes :func:`validate_release_path`.

    It runs one pattern match over all the paths joined by line breaks. A
    path with a line break of its own would add a line, so the count of lines
    is checked too.
    """
    try:
        joined = "\n".join(paths)
    except TypeError:
        return False
    return (
        joined.count("\n") == len(paths) - 1
        and max(map(len, paths)) <= MAX_PATH_LENGTH
        and _SAFE_PATH_LINES.fullmatch(joined) is not None
    )


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
    _check_inside(root, target.parent, release_path, realpaths)
    return target


def _check_inside(
    root: Path, folder: Path, release_path: str, realpaths: dict[Path, Path] | None
) -> None:
    real_root = _realpath(root, realpaths)
    real_folder = _realpath(folder, realpaths)
    if real_folder != real_root and real_root not in real_folder.parents:
        raise ManifestError(
            f"unsafe manifest path {release_path!r}: it resolves outside "
            f"{root} through a symbolic link"
        )


def _realpath(folder: Path, cache: dict[Path, Path] | None) -> Path:
    if cache is None:
        return Path(os.path.realpath(folder))

    resolved = cache.get(folder)
    if resolved is None:
        resolved = Path(os.path.realpath(folder))
        cache[folder] = resolved
    return resolved


class ReleaseRoot:
    """A folder that many release paths are joined to while its tree stays put.

    The proof of :func:`resolve_inside` depends only on the folder that
    contains a path, so it runs once per folder and is kept for the object's
    life. Each later path in a proven folder costs a validation and a string
    join. Use it while the tree does not change, as a planner does.

    Args:
        root: The folder the paths are relative to; it may not exist yet.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        # The root with a separator after it: a release path added to it
        # names the file (with "/" between folders, which Windows takes too).
        self.prefix = os.path.join(root, "")
        self._realpaths: dict[Path, Path] = {}
        # Paths are resolved against the root, so the root is inside.
        self._proven: set[str] = {""}

    def join(self, release_path: str) -> str:
        """Join a release path to the root, proving it stays inside.

        Returns:
            The joined path as a string, not resolved, like
            :func:`resolve_inside`.

        Raises:
            ManifestError: If the path is unsafe or resolves outside the root.
        """
        return self.join_all([release_path])[0]

    def join_all(self, release_paths: Sequence[str]) -> list[str]:
        """Join many release paths, as :meth:`join` joins each one.

        The paths are validated together, as :func:`validate_release_paths`
        does.

        Raises:
            ManifestError: For the first path that is unsafe or resolves
                outside the root.
        """
        self.prove_all(release_paths)
        if os.sep != "/":
            return [self.prefix + p.replace("/", os.sep) for p in release_paths]
        return [self.prefix + path for path in release_paths]

    def prove_all(self, release_paths: Sequence[str]) -> None:
        """Check many release paths as :meth:`join_all` does, without joining them.

        Raises:
            ManifestError: For the first path that is unsafe or resolves
                outside the root.
        """
        validate_release_paths(release_paths)
        proven = self._proven
        for path in release_paths:
            folder = path.rpartition("/")[0]
            if folder not in proven:
                self._prove(folder, path)

    def _prove(self, folder: str, path: str) -> None:
        """Prove that ``folder``, a folder above ``path``, resolves inside the root.

        Its parent is proven first. A real folder (not a link) in a proven
        folder is inside as well, so most folders cost one ``lstat``. A link or
        a missing folder is resolved in full and checked.
        """
        parent = folder.rpartition("/")[0]
        if parent not in self._proven:
            self._prove(parent, path)
        try:
            is_real_folder = stat.S_ISDIR(os.lstat(self.prefix + folder).st_mode)
        except OSError:
            is_real_folder = False
        if not is_real_folder:
            where = self.root.joinpath(*folder.split("/"))
            _check_inside(self.root, where, path, self._realpaths)
        self._proven.add(folder)
