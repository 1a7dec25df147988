"""Application files: every file of the installed listing is present and intact."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codemate_setup.errors import ManifestError
from codemate_setup.listing import InstalledFile
from codemate_setup.paths import resolve_inside, validate_release_path
from codemate_setup.verify.model import CheckResult, CheckStatus

logger = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1024 * 1024
# Requirements path of a listing that does not name one.
DEFAULT_REQUIREMENTS_PATH = "requirements.txt"
# Paths named in a message before "and N more".
SHOWN_PATHS = 5
# The values of a file's array in a listing of format 2, in order.
ARRAY_FIELDS = InstalledFile._fields


@dataclass(frozen=True)
class ListedFile:
    """One file of the installed listing."""

    path: str
    size: int | None
    sha256: str | None
    mtime_ns: int | None


@dataclass(frozen=True)
class InstalledListing:
    """The installed listing (``installed.json``) as far as the checks need it."""

    version: str | None
    entry_point: str | None
    requirements: str | None
    requires_python: str | None
    files: tuple[ListedFile, ...]


class ListingError(ValueError):
    """The installed listing is not in the expected format."""


def load_listing(path: Path) -> InstalledListing | None:
    """Read the installed listing; None when it does not exist.

    Raises:
        ListingError: If it is unreadable, not JSON or not in the expected form.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ListingError(f"cannot read {path}: {e.strerror}") from e

    try:
        document = json.loads(raw)
    except ValueError as e:
        raise ListingError(f"{path} is not valid JSON: {e}") from e

    return parse_listing(document)


def parse_listing(document: Any) -> InstalledListing:
    """Check the form of a listing document and convert it.

    ``files`` may map each path to its entry, or list entries with a ``path``.
    An entry is an object, or in format 2 an array of the ``ARRAY_FIELDS``.

    Raises:
        ListingError: If a field has the wrong type or a path is unsafe.
    """
    if not isinstance(document, dict):
        raise ListingError("the listing must be a JSON object")

    entries = document.get("files", {})
    if isinstance(entries, dict):
        pairs = list(entries.items())
    elif isinstance(entries, list):
        pairs = [(e.get("path") if isinstance(e, dict) else None, e) for e in entries]
    else:
        raise ListingError("'files' must be an object or a list")

    files = tuple(_parse_file(path, entry) for path, entry in pairs)
    return InstalledListing(
        version=_optional_text(document, "version"),
        entry_point=_optional_text(document, "entry_point"),
        requirements=_requirements_path(document),
        requires_python=_optional_text(document, "requires_python"),
        files=files,
    )


def _requirements_path(document: dict[str, Any]) -> str | None:
    """Return the release's requirements path; null means it declares none."""
    if "requirements" not in document:
        return DEFAULT_REQUIREMENTS_PATH
    path = _optional_text(document, "requirements")
    if path is not None:
        try:
            validate_release_path(path)
        except ManifestError as e:
            raise ListingError(str(e)) from e
    return path


def _optional_text(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is None or isinstance(value, str):
        return value or None
    raise ListingError(f"{key!r} must be a string or null, got {value!r}")


def _parse_file(path: Any, entry: Any) -> ListedFile:
    try:
        validate_release_path(path)
    except ManifestError as e:
        raise ListingError(str(e)) from e
    if isinstance(entry, list) and len(entry) == len(ARRAY_FIELDS):
        entry = dict(zip(ARRAY_FIELDS, entry, strict=True))
    if not isinstance(entry, dict):
        raise ListingError(
            f"the entry of {path!r} must be an object or an array of "
            f"{len(ARRAY_FIELDS)} values"
        )

    size = entry.get("size")
    sha256 = entry.get("sha256")
    mtime_ns = entry.get("mtime_ns")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ListingError(f"the size of {path!r} must be a whole number, got {size!r}")
    if sha256 is not None and not isinstance(sha256, str):
        raise ListingError(f"the sha256 of {path!r} must be a string")
    if mtime_ns is not None and not isinstance(mtime_ns, int):
        mtime_ns = None
    return ListedFile(path, size, sha256.lower() if sha256 else None, mtime_ns)


@dataclass
class FileComparison:
    """Files of the listing that are not as installed."""

    checked: int = 0
    hashed: int = 0
    missing: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    wrong_hash: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Files that are missing, changed or unsafe."""
        return (
            len(self.missing)
            + len(self.wrong_size)
            + len(self.wrong_hash)
            + len(self.unsafe)
        )


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in chunks.

    Raises:
        OSError: If the file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def compare_files(
    listing: InstalledListing, install_dir: Path, *, deep: bool
) -> FileComparison:
    """Compare every listed file with the install folder.

    A file counts as intact when its size matches. Its hash is compared too
    with ``deep``, or when its modification time moved since it was
    installed, so an edit that keeps the size is found without hashing
    every file.
    """
    result = FileComparison()
    # The folders are resolved once each, since the check changes no file.
    realpaths: dict[Path, Path] = {}
    for listed in listing.files:
        result.checked += 1
        try:
            target = resolve_inside(install_dir, listed.path, realpaths=realpaths)
        except ManifestError:
            result.unsafe.append(listed.path)
            continue

        try:
            stat = os.stat(target)
        except OSError:
            result.missing.append(listed.path)
            continue

        if listed.size is not None and stat.st_size != listed.size:
            result.wrong_size.append(listed.path)
            continue

        moved = listed.mtime_ns is not None and stat.st_mtime_ns != listed.mtime_ns
        if listed.sha256 and (deep or moved):
            result.hashed += 1
            if not _hash_matches(target, listed.sha256):
                result.wrong_hash.append(listed.path)

    logger.debug(
        "compared %d files (%d hashed): %d problems",
        result.checked,
        result.hashed,
        result.problems,
    )
    return result


def _hash_matches(path: Path, expected: str) -> bool:
    try:
        return sha256_file(path) == expected
    except OSError:
        return False


def _shown(paths: list[str]) -> str:
    text = ", ".join(paths[:SHOWN_PATHS])
    if len(paths) > SHOWN_PATHS:
        text += f" and {len(paths) - SHOWN_PATHS} more"
    return text


def files_result(comparison: FileComparison, version: str, deep: bool) -> CheckResult:
    """Turn a file comparison into the ``application files`` report line."""
    detail = {
        "checked": comparison.checked,
        "hashed": comparison.hashed,
        "missing": comparison.missing,
        "wrong_size": comparison.wrong_size,
        "wrong_hash": comparison.wrong_hash,
        "unsafe": comparison.unsafe,
        "deep": deep,
    }
    if comparison.problems == 0:
        method = "size and hash" if deep else "size"
        return CheckResult(
            "files.listing",
            "application files",
            CheckStatus.OK,
            f"{comparison.checked} files of version {version} match by {method}",
            None,
            detail,
        )

    parts = []
    if comparison.missing:
        parts.append(
            f"{len(comparison.missing)} missing ({_shown(comparison.missing)})"
        )
    if comparison.wrong_size:
        parts.append(
            f"{len(comparison.wrong_size)} with a wrong size "
            f"({_shown(comparison.wrong_size)})"
        )
    if comparison.wrong_hash:
        parts.append(
            f"{len(comparison.wrong_hash)} with a wrong hash "
            f"({_shown(comparison.wrong_hash)})"
        )
    if comparison.unsafe:
        parts.append(
            f"{len(comparison.unsafe)} resolving outside the install folder "
            f"({_shown(comparison.unsafe)})"
        )
    return CheckResult(
        "files.listing",
        "application files",
        CheckStatus.FAIL,
        f"{comparison.problems} of {comparison.checked} files of version {version} "
        f"are not as installed: {'; '.join(parts)}",
        f"repair the installation with: python update.py {version}",
        detail,
    )


def entry_point_result(
    listing: InstalledListing, install_dir: Path, version: str
) -> CheckResult | None:
    """Check that the entry point exists; None when the listing names none."""
    entry = listing.entry_point
    if entry is None:
        return None

    try:
        path = resolve_inside(install_dir, entry)
    except ManifestError as e:
        return CheckResult(
            "files.entry_point",
            "entry point",
            CheckStatus.FAIL,
            str(e),
            f"repair the installation with: python update.py {version}",
        )

    if path.is_file():
        return CheckResult(
            "files.entry_point", "entry point", CheckStatus.OK, f"{entry} exists"
        )

    return CheckResult(
        "files.entry_point",
        "entry point",
        CheckStatus.FAIL,
        f"{entry} not found in {install_dir}",
        f"repair the installation with: python update.py {version}",
        {"path": str(path)},
    )
