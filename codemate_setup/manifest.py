"""Parse and validate release manifests; pure, no I/O.

A manifest either carries a full ``files`` listing (path, sha256, size, mode
per file) or only the legacy incremental lists ``codebase.files_add``,
``files_edit`` and ``files_delete``, whose entries are plain paths or objects
like those of ``files``. The whole manifest is rejected on the first invalid
value, so nothing is downloaded or changed for a manifest that fails here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter, methodcaller
from typing import Any, NamedTuple

from packaging.version import Version

from codemate_setup.config import Limits
from codemate_setup.errors import ManifestError, UsageError
from codemate_setup.paths import release_paths_are_safe, validate_release_path
from codemate_setup.records import make_records
from codemate_setup.versions import parse_version

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_HEX = re.compile(r"[0-9a-fA-F]*")
# Permission bits only: setuid, setgid and sticky bits are never installed.
_MODE = re.compile(r"0?[0-7]{3}")
OWNER_READ = 0o400

_LEGACY_LISTS = ("files_add", "files_edit", "files_delete")

# The required keys of a ``files`` entry, and its optional mode.
_ENTRY_FIELDS = itemgetter("path", "sha256", "size")
_ENTRY_MODE = methodcaller("get", "mode")


class ManifestEntry(NamedTuple):
    """One file of a release: its path and what the manifest declares about it.

    A named tuple rather than a dataclass, because a full manifest has one per
    file of the release and named tuples are built several times faster.
    """

    path: str
    sha256: str | None = None
    size: int | None = None
    mode: int | None = None


@dataclass(frozen=True)
class Manifest:
    """A validated release manifest.

    ``files`` is the full listing, or None for a legacy manifest that only
    has the incremental lists.
    """

    version: Version
    previous_version: Version | None
    files: tuple[ManifestEntry, ...] | None
    added: tuple[ManifestEntry, ...]
    edited: tuple[ManifestEntry, ...]
    deleted: tuple[str, ...]
    requirements: str | None
    entry_point: str | None

    @property
    def is_full(self) -> bool:
        """Whether the manifest lists every file of its release."""
        return self.files is not None


def parse_mode(text: object) -> int:
    """Parse a manifest mode such as ``"0644"`` into permission bits.

    Raises:
        ValueError: If the text is not an octal permission that lets the owner
            read the file.
    """
    if not isinstance(text, str) or not _MODE.fullmatch(text):
        raise ValueError(f"must be an octal permission such as '0644', got {text!r}")

    mode = int(text, 8)
    if not mode & OWNER_READ:
        raise ValueError(f"must let the owner read the file, got {text!r}")
    return mode


def format_mode(mode: int) -> str:
    """Return the manifest form of permission bits, such as ``"0644"``."""
    return f"{mode & 0o777:04o}"


def parse_manifest(
    document: object, *, expected_version: Version, limits: Limits
) -> Manifest:
    """Validate a manifest document fetched for ``expected_version``.

    Args:
        document: The parsed JSON of ``GET /manifest/v{VERSION}``.
        expected_version: The version that was requested; the manifest must
            declare the same one.
        limits: Bounds on file count and per-file size.

    Returns:
        The validated manifest.

    Raises:
        ManifestError: Naming the first invalid value and what was expected.
    """
    try:
        return _parse(document, expected_version, limits)
    except (ManifestError, ValueError, UsageError) as e:
        raise ManifestError(
            f"invalid manifest for release {expected_version}: {e}; "
            "the release cannot be installed until its publisher fixes it"
        ) from e


def _parse(document: object, expected: Version, limits: Limits) -> Manifest:
    if not isinstance(document, Mapping):
        raise ValueError(f"expected a JSON object, got {type(document).__name__}")

    version = _parse_version_field(document, "version", required=True)
    if version != expected:
        raise ValueError(f"it declares version {version}, but {expected} was requested")

    files = _parse_files(document.get("files"), limits)
    added, edited, deleted = _parse_codebase(document.get("codebase"), limits)
    if files is None and "codebase" not in document:
        raise ValueError("it has neither a 'files' listing nor 'codebase' lists")

    if files is not None:
        check_layout(entry.path for entry in files)
    check_layout(entry.path for entry in (*added, *edited))

    return Manifest(
        version=version,
        previous_version=_parse_version_field(document, "previous_version"),
        files=files,
        added=added,
        edited=edited,
        deleted=deleted,
        requirements=_optional_path(document, "requirements"),
        entry_point=_optional_path(document, "entry_point"),
    )


def _parse_version_field(
    document: Mapping[str, Any], key: str, *, required: bool = False
) -> Version | None:
    value = document.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be a version string, got {value!r}")
    return parse_version(value)


def _optional_path(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    return validate_release_path(value)


def _parse_files(value: object, limits: Limits) -> tuple[ManifestEntry, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"'files' must be a list, got {type(value).__name__}")
    if len(value) > limits.max_files:
        raise ValueError(
            f"'files' lists {len(value)} files, more than the limit of "
            f"{limits.max_files}"
        )

    entries = _parse_files_at_once(value, limits)
    if entries is None:
        entries = tuple(
            _parse_entry(item, f"files[{index}]", limits, require_hash=True)
            for index, item in enumerate(value)
        )
    _check_unique([entry.path for entry in entries], "files")
    return entries


def _parse_files_at_once(
    value: list[Any], limits: Limits
) -> tuple[ManifestEntry, ...] | None:
    """Validate every entry of ``files`` with a few passes over all of them.

    The checks are those of :func:`_parse_entry`, done per field for the
    whole list, which costs far less per entry than a Python loop.

    Returns:
        The entries, or None if any entry breaks a rule or has a form these
        passes do not take. The caller then checks the entries one by one,
        which names the first problem.
    """
    if not value:
        return ()
    try:
        paths, hashes, sizes = zip(*map(_ENTRY_FIELDS, value), strict=True)
        texts = list(map(_ENTRY_MODE, value))
        modes = {text: parse_mode(text) for text in set(texts) if text is not None}
    except (KeyError, TypeError, AttributeError, ValueError):
        return None

    if not (
        release_paths_are_safe(paths)
        and _are_sha256(hashes)
        and _are_sizes(sizes, limits)
    ):
        return None
    rows = zip(paths, map(str.lower, hashes), sizes, map(modes.get, texts), strict=True)
    return tuple(make_records(ManifestEntry, rows))


def _are_sha256(values: Sequence[object]) -> bool:
    try:
        joined = "".join(values)
    except TypeError:
        return False
    return set(map(len, values)) == {64} and _HEX.fullmatch(joined) is not None


def _are_sizes(values: Sequence[object], limits: Limits) -> bool:
    return (
        set(map(type, values)) == {int}
        and min(values) >= 0
        and max(values) <= limits.max_file_bytes
    )


def _parse_codebase(
    value: object, limits: Limits
) -> tuple[tuple[ManifestEntry, ...], tuple[ManifestEntry, ...], tuple[str, ...]]:
    if value is None:
        return (), (), ()
    if not isinstance(value, Mapping):
        raise ValueError(f"'codebase' must be an object, got {type(value).__name__}")

    lists: dict[str, list[object]] = {}
    for key in _LEGACY_LISTS:
        items = value.get(key) or []
        if not isinstance(items, list):
            raise ValueError(
                f"'codebase.{key}' must be a list, got {type(items).__name__}"
            )
        lists[key] = items

    total = sum(len(items) for items in lists.values())
    if total > limits.max_files:
        raise ValueError(
            f"'codebase' lists {total} paths, more than the limit of {limits.max_files}"
        )

    parsed = {
        key: tuple(
            _parse_entry(item, f"codebase.{key}[{index}]", limits, require_hash=False)
            for index, item in enumerate(items)
        )
        for key, items in lists.items()
    }
    _check_unique(
        [entry.path for key in _LEGACY_LISTS for entry in parsed[key]], "codebase"
    )
    deleted = tuple(entry.path for entry in parsed["files_delete"])
    return parsed["files_add"], parsed["files_edit"], deleted


def _parse_entry(
    item: object, where: str, limits: Limits, *, require_hash: bool
) -> ManifestEntry:
    if isinstance(item, str) and not require_hash:
        return ManifestEntry(path=validate_release_path(item))
    if not isinstance(item, Mapping):
        raise ValueError(f"{where} must be an object, got {item!r:.80}")

    path = validate_release_path(item.get("path"))
    sha256 = _parse_sha256(item.get("sha256"), where, required=require_hash)
    size = _parse_size(item.get("size"), where, limits, required=require_hash)

    mode = None
    if item.get("mode") is not None:
        try:
            mode = parse_mode(item["mode"])
        except ValueError as e:
            raise ValueError(f"{where}.mode {e}") from e

    return ManifestEntry(path=path, sha256=sha256, size=size, mode=mode)


def _parse_sha256(value: object, where: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ValueError(
            f"{where}.sha256 must be 64 hexadecimal characters, got {value!r:.80}"
        )
    return value.lower()


def _parse_size(
    value: object, where: str, limits: Limits, *, required: bool
) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"{where}.size must be a byte count of 0 or more, got {value!r}"
        )
    if value > limits.max_file_bytes:
        raise ValueError(
            f"{where}.size is {value} bytes, more than the per-file limit of "
            f"{limits.max_file_bytes}"
        )
    return value


def _check_unique(paths: Sequence[str], where: str) -> None:
    # NOTE: paths that differ only in letter case pass this check, but on a
    # case-insensitive file system (Windows, macOS) they name one file.
    if len(set(paths)) == len(paths):
        return
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise ValueError(f"'{where}' lists the path {path!r} more than once")
        seen.add(path)


def check_layout(paths: Iterable[str]) -> None:
    """Check that no file path is also a folder of another file path.

    Args:
        paths: Release paths of files that are to exist together.

    Raises:
        ValueError: Naming a path that is both a file and a folder.
    """
    files = set(paths)
    clashes = files & all_folders(files)
    if clashes:
        folder = min(clashes)
        path = min(path for path in files if path.startswith(f"{folder}/"))
        raise ValueError(
            f"the path {folder!r} is listed as a file and also as the folder of "
            f"{path!r}"
        )


def all_folders(paths: Iterable[str]) -> set[str]:
    """Return every folder above any of the release paths.

    Each distinct folder is split once, however many files it contains.
    """
    folders: set[str] = set()
    for parent in {path.rpartition("/")[0] for path in paths}:
        while parent and parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    return folders


def parent_folders(path: str) -> Sequence[str]:
    """Return the folders above a release path, shallowest first.

    ``"a/b/c.py"`` gives ``["a", "a/b"]``; a path at the root gives ``[]``.
    """
    parts = path.split("/")[:-1]
    return ["/".join(parts[: index + 1]) for index in range(len(parts))]
