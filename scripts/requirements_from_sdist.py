"""Derive a requirements.txt from the declared requirements of a source distribution.

Reads the ``Requires-Dist`` fields of the sdist's top-level ``PKG-INFO`` (core
metadata), leaves out the requirements that apply only with an extra, keeps
environment markers, and writes one requirement per line. An sdist whose
``PKG-INFO`` lists no ``Requires-Dist`` falls back to the setuptools file
``*.egg-info/requires.txt`` when the sdist contains one.

Usage::

    python scripts/requirements_from_sdist.py httpie-3.2.4.tar.gz -o requirements.txt

The source may be an sdist archive (``.tar.gz``, ``.tar.bz2``, ``.tar.xz``,
``.tgz``, ``.tar``, ``.zip``) or its unpacked folder. Nothing is extracted to
disk. Exit codes: 0 written, 1 the output could not be written, 2 invalid input.
"""

from __future__ import annotations

import argparse
import email.parser
import logging
import re
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement

logger = logging.getLogger(__name__)

# PKG-INFO carries the long description, which is rarely above a few hundred
# KiB; the bound only stops a damaged archive from filling memory.
MAX_METADATA_BYTES = 16 * 1024 * 1024

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")

_QUOTED_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")
_EXTRA_VARIABLE = re.compile(r"\bextra\b")


class SdistError(Exception):
    """An sdist that cannot be read or whose requirements cannot be derived."""


@dataclass
class SdistMetadata:
    """The metadata files read from one sdist."""

    origin: str
    pkg_info: str
    requires_txt: str | None = None


@dataclass
class DerivedRequirements:
    """Requirements of one sdist, with the lines that were left out."""

    name: str
    version: str
    source_field: str
    runtime: list[str] = field(default_factory=list)
    extras_only: list[str] = field(default_factory=list)


def needs_extra(requirement: Requirement) -> bool:
    """Tell whether a requirement's marker refers to the ``extra`` variable.

    Such a requirement applies only when the distribution is installed with an
    extra (``name[dev]``), so it is not a runtime requirement of the plain
    application. Quoted literals are removed first, so a value such as
    ``platform_release == "extra"`` does not count.

    Args:
        requirement: a parsed PEP 508 requirement.

    Returns:
        True when the marker uses ``extra``.
    """
    if requirement.marker is None:
        return False

    unquoted = _QUOTED_LITERAL.sub("", str(requirement.marker))
    return _EXTRA_VARIABLE.search(unquoted) is not None


def parse_requires_txt(text: str) -> list[str]:
    """Convert a setuptools ``requires.txt`` into PEP 508 requirement lines.

    Lines before any section header are plain requirements. A ``[:MARKER]``
    section applies MARKER to its lines. An ``[EXTRA]`` or ``[EXTRA:MARKER]``
    section belongs to an extra, so its lines are returned with an
    ``extra == "EXTRA"`` marker, which ``needs_extra`` then recognizes.

    Args:
        text: the content of ``requires.txt``.

    Returns:
        The requirement lines, in file order.
    """
    lines: list[str] = []
    marker_parts: list[str] = []

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        if line.startswith("[") and line.endswith("]"):
            extra, _, marker = line[1:-1].partition(":")
            marker_parts = []
            if extra.strip():
                marker_parts.append(f'extra == "{extra.strip()}"')
            if marker.strip():
                marker_parts.append(f"({marker.strip()})")
            continue

        if marker_parts:
            lines.append(f"{line}; {' and '.join(marker_parts)}")
        else:
            lines.append(line)

    return lines


def derive_requirements(metadata: SdistMetadata) -> DerivedRequirements:
    """Derive the runtime requirements from an sdist's metadata.

    Args:
        metadata: the sdist's ``PKG-INFO`` and, when present, ``requires.txt``.

    Returns:
        The runtime requirement lines, as declared, and the extras-only ones.

    Raises:
        SdistError: ``PKG-INFO`` lacks a name or version, declares
            ``Requires-Dist`` as dynamic, or a requirement is invalid PEP 508.
    """
    headers = email.parser.HeaderParser().parsestr(metadata.pkg_info)
    name = headers.get("Name")
    version = headers.get("Version")
    if not name or not version:
        raise SdistError(
            f"PKG-INFO in {metadata.origin} must have Name and Version fields, "
            f"found Name={name!r} and Version={version!r}"
        )

    dynamic = {value.strip().lower() for value in headers.get_all("Dynamic") or []}
    if "requires-dist" in dynamic:
        raise SdistError(
            f"PKG-INFO in {metadata.origin} marks Requires-Dist as dynamic, so the "
            "sdist does not fix its requirements. Build a wheel and read the "
            "Requires-Dist fields of its METADATA instead."
        )

    lines = [value.strip() for value in headers.get_all("Requires-Dist") or []]
    source_field = "Requires-Dist in PKG-INFO"
    if not lines and metadata.requires_txt is not None:
        lines = parse_requires_txt(metadata.requires_txt)
        source_field = "requires.txt in the egg-info folder"
    logger.debug("%s: %d requirement lines from %s", name, len(lines), source_field)

    derived = DerivedRequirements(name=name, version=version, source_field=source_field)
    for line in lines:
        _sort_requirement(derived, line, metadata.origin)
    return derived


def _sort_requirement(derived: DerivedRequirements, line: str, origin: str) -> None:
    try:
        requirement = Requirement(line)
    except InvalidRequirement as error:
        raise SdistError(
            f"requirement {line!r} in {origin} must be valid PEP 508: {error}"
        ) from error

    if needs_extra(requirement):
        derived.extras_only.append(line)
    else:
        derived.runtime.append(line)


def format_requirements(derived: DerivedRequirements) -> str:
    """Render derived requirements as a requirements.txt text.

    Args:
        derived: the result of ``derive_requirements``.

    Returns:
        The file content: a two-line comment header, then one requirement a line.
    """
    header = [
        f"# Requirements of {derived.name} {derived.version}, "
        f"from {derived.source_field} of its sdist.",
        f"# {len(derived.extras_only)} requirements that apply only with an extra "
        "are left out.",
    ]
    return "\n".join(header + derived.runtime) + "\n"


def read_sdist_metadata(source: Path) -> SdistMetadata:
    """Read ``PKG-INFO`` and any ``*.egg-info/requires.txt`` of an sdist.

    Args:
        source: an sdist archive, or the folder it unpacks to.

    Returns:
        The metadata texts.

    Raises:
        SdistError: the source is missing, not a supported archive, damaged,
            or has no single top-level ``PKG-INFO``.
    """
    if source.is_dir():
        return _read_folder(source)
    if not source.is_file():
        raise SdistError(f"sdist {source} not found. Pass an sdist file or folder.")

    name = source.name.lower()
    try:
        if name.endswith(TAR_SUFFIXES):
            return _read_tar(source)
        if name.endswith(".zip"):
            return _read_zip(source)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise SdistError(f"sdist {source} could not be read: {error}") from error

    raise SdistError(
        f"sdist {source} must end in one of {', '.join(TAR_SUFFIXES)} or .zip"
    )


def _read_folder(folder: Path) -> SdistMetadata:
    pkg_info = folder / "PKG-INFO"
    if not pkg_info.is_file():
        raise SdistError(
            f"sdist folder {folder} must contain PKG-INFO at its top, found none"
        )

    found = [*folder.glob("*.egg-info/requires.txt")]
    found += folder.glob("*/*.egg-info/requires.txt")
    candidates = sorted(path.relative_to(folder).as_posix() for path in found)
    requires_path = _single_requires_txt(candidates, str(folder))
    return SdistMetadata(
        origin=str(folder),
        pkg_info=_decode(_read_bounded_file(pkg_info), f"{folder}/PKG-INFO"),
        requires_txt=_read_optional_text(folder, requires_path),
    )


def _read_optional_text(folder: Path, relative: str | None) -> str | None:
    if relative is None:
        return None
    return _decode(_read_bounded_file(folder / relative), f"{folder}/{relative}")


def _read_bounded_file(path: Path) -> bytes:
    if path.stat().st_size > MAX_METADATA_BYTES:
        raise SdistError(
            f"{path} must be at most {MAX_METADATA_BYTES} bytes, "
            f"found {path.stat().st_size}"
        )
    return path.read_bytes()


def _read_tar(archive: Path) -> SdistMetadata:
    with tarfile.open(archive, "r:*") as tar:
        members = {member.name: member for member in tar.getmembers()}
        pkg_info_name, requires_name = _locate_members(
            [name for name, member in members.items() if member.isfile()], archive
        )
        pkg_info = _read_tar_member(tar, members[pkg_info_name], archive)
        requires_txt = None
        if requires_name is not None:
            requires_txt = _read_tar_member(tar, members[requires_name], archive)

    return SdistMetadata(str(archive), pkg_info, requires_txt)


def _read_tar_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path
) -> str:
    if member.size > MAX_METADATA_BYTES:
        raise SdistError(
            f"{member.name} in {archive} must be at most {MAX_METADATA_BYTES} "
            f"bytes, found {member.size}"
        )
    stream = tar.extractfile(member)
    if stream is None:
        raise SdistError(f"{member.name} in {archive} must be a regular file")
    with stream:
        return _decode(stream.read(), f"{archive}:{member.name}")


def _read_zip(archive: Path) -> SdistMetadata:
    with zipfile.ZipFile(archive) as zip_file:
        infos = {info.filename: info for info in zip_file.infolist()}
        pkg_info_name, requires_name = _locate_members(
            [name for name, info in infos.items() if not info.is_dir()], archive
        )
        pkg_info = _read_zip_member(zip_file, infos[pkg_info_name], archive)
        requires_txt = None
        if requires_name is not None:
            requires_txt = _read_zip_member(zip_file, infos[requires_name], archive)

    return SdistMetadata(str(archive), pkg_info, requires_txt)


def _read_zip_member(
    zip_file: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Path
) -> str:
    if info.file_size > MAX_METADATA_BYTES:
        raise SdistError(
            f"{info.filename} in {archive} must be at most {MAX_METADATA_BYTES} "
            f"bytes, found {info.file_size}"
        )
    return _decode(zip_file.read(info), f"{archive}:{info.filename}")


def _locate_members(names: list[str], archive: Path) -> tuple[str, str | None]:
    """Find the top-level PKG-INFO and the optional requires.txt among file names."""
    pkg_infos = sorted(
        name for name in names if _is_top_pkg_info(PurePosixPath(name.rstrip("/")))
    )
    if len(pkg_infos) != 1:
        raise SdistError(
            f"sdist {archive} must contain exactly one TOP/PKG-INFO, "
            f"found {len(pkg_infos)}: {pkg_infos[:5]}"
        )

    top = PurePosixPath(pkg_infos[0]).parts[0]
    candidates = sorted(
        name
        for name in names
        if PurePosixPath(name).parts[:1] == (top,)
        and _is_requires_txt(PurePosixPath(name))
    )
    return pkg_infos[0], _single_requires_txt(candidates, str(archive))


def _is_top_pkg_info(path: PurePosixPath) -> bool:
    return len(path.parts) == 2 and path.name == "PKG-INFO"


def _is_requires_txt(path: PurePosixPath) -> bool:
    # TOP/NAME.egg-info/requires.txt, or one folder deeper for the src layout
    # (TOP/src/NAME.egg-info/requires.txt).
    return (
        path.name == "requires.txt"
        and path.parent.name.endswith(".egg-info")
        and len(path.parts) in (3, 4)
    )


def _single_requires_txt(candidates: list[str], origin: str) -> str | None:
    if len(candidates) > 1:
        raise SdistError(
            f"sdist {origin} must contain at most one *.egg-info/requires.txt, "
            f"found {len(candidates)}: {candidates}"
        )
    return candidates[0] if candidates else None


def _decode(data: bytes, source_name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SdistError(f"{source_name} must be UTF-8 text: {error}") from error


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        description=(
            "Write a requirements.txt from the Requires-Dist fields of an sdist's "
            "PKG-INFO, without extras-only requirements, keeping markers."
        ),
        epilog="Exit codes: 0 written, 1 the output could not be written, "
        "2 invalid input.",
    )
    parser.add_argument("source", type=Path, help="sdist archive or unpacked folder")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="file to write (default: standard output)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Derive and write the requirements, and return the exit code."""
    try:
        derived = derive_requirements(read_sdist_metadata(args.source))
    except SdistError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    text = format_requirements(derived)
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as error:
            print(f"error: writing {args.output} failed: {error}", file=sys.stderr)
            return 1

    counts = (
        f"{len(derived.runtime)} runtime requirements, "
        f"{len(derived.extras_only)} extras-only left out"
    )
    print(f"{derived.name} {derived.version}: {counts}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
