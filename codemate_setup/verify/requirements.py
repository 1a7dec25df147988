"""Parsing of pip requirements files into lines to judge and lines to pass on.

A line that names a distribution with an optional specifier, extras, marker or
direct URL is judged against the environment here. Every other line (options,
editable installs, local paths, archives, lines ``packaging`` rejects) is kept
verbatim and handed to the installer, never dropped.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

logger = logging.getLogger(__name__)

# pip's rules: a comment starts at "#" at the line start or after whitespace,
# and a line ending in a backslash continues on the next one.
_COMMENT = re.compile(r"(^|\s+)#.*$")
# Per-line options such as "--hash=sha256:..." follow the requirement.
_LINE_OPTION = re.compile(r"\s+--?[A-Za-z]")
# pip expands only ${NAME} with upper-case letters, digits and underscores.
_ENV_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)\}")

_INCLUDE_OPTIONS = ("-r", "--requirement")
# Options whose value may be a path relative to the requirements file.
_PATH_OPTIONS = ("-c", "--constraint", "-f", "--find-links")
_EDITABLE_OPTIONS = ("-e", "--editable")

ReadFile = Callable[[Path], str]


class LineKind(str, Enum):
    """Treatment of a requirements line: judged here, or passed to the installer."""

    REQUIREMENT = "requirement"
    OPAQUE = "opaque"


@dataclass(frozen=True)
class RequirementLine:
    """One logical line of a requirements file.

    Attributes:
        text: The line as the installer gets it: continuations joined, the
            comment removed, local paths made absolute.
        source: The file it came from, for messages.
        lineno: Its first physical line number.
        kind: REQUIREMENT when ``requirement`` is set, else OPAQUE.
        requirement: The parsed requirement, with ``${VAR}`` expanded.
        hashed: The line carries ``--hash`` options.
    """

    text: str
    source: str
    lineno: int
    kind: LineKind
    requirement: Requirement | None = None
    hashed: bool = False

    @property
    def where(self) -> str:
        """Where the line is, such as ``requirements.txt:3``."""
        return f"{self.source}:{self.lineno}"


@dataclass
class RequirementsSet:
    """Everything a requirements file and its includes contain.

    Attributes:
        lines: Requirements and opaque lines, in file order.
        options: Global option lines (index, find-links, constraints), in
            file order, with local paths made absolute.
        problems: What makes the file unusable, such as a missing include.
    """

    lines: list[RequirementLine] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def requirements(self) -> list[RequirementLine]:
        """The lines that can be judged."""
        return [line for line in self.lines if line.kind is LineKind.REQUIREMENT]

    @property
    def opaque(self) -> list[RequirementLine]:
        """The lines only the installer can judge."""
        return [line for line in self.lines if line.kind is LineKind.OPAQUE]


def read_text_file(path: Path) -> str:
    """Read a requirements file as UTF-8 (a leading BOM is dropped).

    Raises:
        OSError: If the file cannot be read.
        UnicodeDecodeError: If it is not UTF-8.
    """
    return path.read_bytes().decode("utf-8-sig")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines and strip comments, as pip does.

    Returns:
        ``(first line number, text)`` for each non-empty logical line.
    """
    result = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\") and not _COMMENT.match(raw):
            pending += raw[:-1]
            continue

        line = _COMMENT.sub("", pending + raw).strip()
        pending = ""
        if line:
            result.append((start, line))

    tail = _COMMENT.sub("", pending).strip()
    if tail:
        result.append((start, tail))
    return result


def parse_requirements(
    text: str,
    source: str,
    base_dir: Path,
    *,
    read_file: ReadFile = read_text_file,
    max_depth: int = 10,
    environ: dict[str, str] | None = None,
) -> RequirementsSet:
    """Parse a requirements file, following local ``-r`` includes.

    Args:
        text: The file's content.
        source: Its name for messages.
        base_dir: The folder relative paths in it are resolved against.
        read_file: Reads an included file.
        max_depth: Deepest chain of includes followed.
        environ: Variables for ``${NAME}`` expansion; ``os.environ`` by default.

    Returns:
        The parsed set; an unreadable include is listed in ``problems``.
    """
    result = RequirementsSet()
    parser = _Parser(result, read_file, max_depth, environ or dict(os.environ))
    parser.parse(text, source, base_dir, depth=0, seen=frozenset())
    return result


@dataclass
class _Parser:
    result: RequirementsSet
    read_file: ReadFile
    max_depth: int
    environ: dict[str, str]

    def parse(
        self, text: str, source: str, base_dir: Path, depth: int, seen: frozenset[Path]
    ) -> None:
        for lineno, line in logical_lines(text):
            option, value = _split_option(line)
            if option in _INCLUDE_OPTIONS and value:
                self._include(value, source, lineno, base_dir, depth, seen)
            elif option in _PATH_OPTIONS and value:
                self.result.options.append(f"{option} {_absolute(value, base_dir)}")
            elif option in _EDITABLE_OPTIONS:
                self._opaque(f"{option} {_absolute(value, base_dir)}", source, lineno)
            elif option is not None:
                self.result.options.append(line)
            else:
                self._requirement(line, source, lineno, base_dir)

    def _include(
        self,
        target: str,
        source: str,
        lineno: int,
        base_dir: Path,
        depth: int,
        seen: frozenset[Path],
    ) -> None:
        if "://" in target:
            self._opaque(f"-r {target}", source, lineno)
            return

        path = (base_dir / target).resolve()
        if path in seen:
            logger.debug("skipping the include cycle back to %s", path)
            return
        if depth >= self.max_depth:
            self.result.problems.append(
                f"{source}:{lineno} includes {target}, deeper than "
                f"{self.max_depth} levels of -r; flatten the includes"
            )
            return

        try:
            included = self.read_file(path)
        except (OSError, UnicodeDecodeError) as e:
            reason = "not UTF-8" if isinstance(e, UnicodeDecodeError) else e.strerror
            self.result.problems.append(
                f"{source}:{lineno} includes {target}, which cannot be read "
                f"({path}: {reason}); restore that file or remove the -r line"
            )
            return

        self.parse(included, target, path.parent, depth + 1, seen | {path})

    def _requirement(self, line: str, source: str, lineno: int, base_dir: Path) -> None:
        match = _LINE_OPTION.search(line)
        spec = line[: match.start()] if match else line
        hashed = "--hash" in line[match.start() :] if match else False

        expanded = _ENV_VARIABLE.sub(
            lambda m: self.environ.get(m.group(1), m.group(0)), spec
        )
        try:
            requirement = Requirement(expanded)
        except InvalidRequirement as e:
            logger.debug(
                "%s:%d is not a valid requirement (%s); passing it to the installer",
                source,
                lineno,
                e,
            )
            self._opaque(_absolute_spec(line, spec, base_dir), source, lineno)
            return

        self.result.lines.append(
            RequirementLine(
                line, source, lineno, LineKind.REQUIREMENT, requirement, hashed
            )
        )

    def _opaque(self, text: str, source: str, lineno: int) -> None:
        self.result.lines.append(RequirementLine(text, source, lineno, LineKind.OPAQUE))


def _split_option(line: str) -> tuple[str | None, str]:
    """Split ``-r file``, ``-rfile`` or ``--requirement=file`` into its parts."""
    if not line.startswith("-"):
        return None, ""

    if line.startswith("--"):
        name, sep, value = line.partition("=")
        if not sep:
            name, _, value = line.partition(" ")
        return name.strip(), value.strip()

    name, value = line[:2], line[2:]
    return name, value.lstrip("= ").strip()


def _absolute(value: str, base_dir: Path) -> str:
    """Make a relative local path absolute; URLs and missing paths stay as they are."""
    if not value or "://" in value or Path(value).is_absolute():
        return value
    candidate = base_dir / value
    return str(candidate.resolve()) if candidate.exists() else value


def _absolute_spec(line: str, spec: str, base_dir: Path) -> str:
    """Rewrite the leading local path of an opaque line, keeping its options."""
    stripped = spec.strip()
    absolute = _absolute(stripped, base_dir)
    if absolute == stripped:
        return line
    return absolute + line[len(spec) :]
