"""The files of a source tree that can be published, and the checks on them.

Only regular files are published. Links, special files, names that are not
valid on Windows or not UTF-8, and paths that collide by letter case or Unicode
normalization are rejected, and the error names each one.
"""

from __future__ import annotations

import logging
import os
import stat
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from codemate_setup.errors import ManifestError, UsageError
from codemate_setup.paths import validate_release_path

logger = logging.getLogger(__name__)

# Maximum number of problems listed in one error message. The rest are only counted.
MAX_LISTED_PROBLEMS = 10

_WINDOWS_INVALID_CHARS = frozenset('<>:"|?*')
_WINDOWS_RESERVED_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{digit}" for digit in range(1, 10)]
    + [f"LPT{digit}" for digit in range(1, 10)]
)


@dataclass(frozen=True)
class SourceFile:
    """One file to publish: its release path, where it is read from, its mode.

    ``follow_link`` is set only for a file named on the command line, whose
    path may legitimately be a symbolic link.
    """

    path: str
    source: Path
    mode: str
    follow_link: bool = False


def scan_source_tree(source_root: Path) -> list[SourceFile]:
    """List the files of a source tree, sorted by release path.

    Args:
        source_root: The tree's root folder.

    Returns:
        One entry per regular file.

    Raises:
        UsageError: Naming every entry that cannot be published (up to a
            limit), or if the tree has no files.
    """
    files: list[SourceFile] = []
    problems: list[str] = []
    pending = [(source_root, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda item: item.name)
        except OSError as e:
            problems.append(f"folder {prefix or '.'!r} cannot be read ({e.strerror})")
            continue

        for entry in entries:
            path = f"{prefix}{entry.name}"
            problem = _entry_problem(entry, path)
            if problem is not None:
                problems.append(problem)
            elif entry.is_dir(follow_symlinks=False):
                pending.append((Path(entry.path), f"{path}/"))
            else:
                mode = entry.stat(follow_symlinks=False).st_mode
                files.append(SourceFile(path, Path(entry.path), normalized_mode(mode)))

    problems.extend(_describe_collisions(find_case_collisions(f.path for f in files)))
    if problems:
        raise UsageError(_problems_message(source_root, problems))
    if not files:
        raise UsageError(
            f"source folder {str(source_root)!r} contains no files; "
            f"there is nothing to publish"
        )
    return sorted(files, key=lambda item: item.path)


def _entry_problem(entry: os.DirEntry[str], path: str) -> str | None:
    quoted_path = ascii(path) if not _is_utf8(path) else repr(path)
    if not _is_utf8(entry.name):
        return f"{quoted_path} has a name that is not valid UTF-8"
    if entry.is_symlink():
        return f"{quoted_path} is a symbolic link"
    if not entry.is_dir(follow_symlinks=False) and not entry.is_file(
        follow_symlinks=False
    ):
        return f"{quoted_path} is a special file (FIFO, socket or device)"

    name_problem = windows_name_problem(entry.name)
    if name_problem is not None:
        return f"{quoted_path} {name_problem}"
    try:
        validate_release_path(path)
    except ManifestError as e:
        return str(e)
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def normalized_mode(st_mode: int) -> str:
    """Return ``"0755"`` when the owner may execute the file, else ``"0644"``."""
    return "0755" if st_mode & stat.S_IXUSR else "0644"


def windows_name_problem(name: str) -> str | None:
    """Describe why a file name is invalid on Windows, or return None."""
    if any(ch in _WINDOWS_INVALID_CHARS for ch in name):
        return 'has a name with one of <>:"|?*, which Windows does not allow'
    if name.endswith((".", " ")):
        return "has a name ending in a dot or a space, which Windows drops"
    if name.split(".")[0].rstrip(" ").upper() in _WINDOWS_RESERVED_NAMES:
        return "has a name reserved for a device on Windows"
    return None


def find_case_collisions(paths: Iterable[str]) -> list[tuple[str, str]]:
    """Find paths that differ only in letter case or Unicode normalization.

    Folders count too: ``Lib/a.py`` and ``lib/b.py`` collide on ``Lib``.

    Args:
        paths: Release paths of files.

    Returns:
        Sorted pairs ``(first, second)`` of colliding file or folder paths.
    """
    seen: dict[str, str] = {}
    collisions: set[tuple[str, str]] = set()
    for path in sorted(paths):
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            key = unicodedata.normalize("NFC", prefix).lower()
            first = seen.setdefault(key, prefix)
            if first != prefix:
                collisions.add((first, prefix))
                break
    return sorted(collisions)


def _describe_collisions(collisions: list[tuple[str, str]]) -> list[str]:
    return [
        f"{first!r} and {second!r} differ only in letter case or Unicode "
        f"normalization, so they collide on Windows and macOS"
        for first, second in collisions
    ]


def _problems_message(source_root: Path, problems: list[str]) -> str:
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    if more > 0:
        listed += f"; and {more} more"
    return (
        f"cannot publish {str(source_root)!r}: a release holds regular files with "
        f"portable UTF-8 names only, found {len(problems)} other entries: {listed}. "
        f"Replace links with copies, remove special files, rename the rest, and "
        f"publish again"
    )
