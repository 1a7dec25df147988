"""Decide what an update downloads and which moves it makes; pure, no I/O.

The planner reads the install folder only through a :class:`DiskView`, so
every decision here is a function of the manifests, the installed listing and
what the view reports.

A plan's moves run in this order, which makes each of them possible:

1. ``backup``: move each replaced or deleted file into the backup;
2. ``rmdir``: remove folders left empty, deepest first, including a folder
   whose path becomes a file;
3. ``mkdir``: create the folders new files need, shallowest first, including
   one whose path was a file;
4. ``place``: move each staged file into place;
5. ``chmod``: change the mode of files whose content is unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from itertools import compress, repeat
from operator import attrgetter, eq, itemgetter, not_
from typing import Protocol

from codemate_setup.errors import InstallError
from codemate_setup.install_view import FileState, PathKind
from codemate_setup.listing import InstalledFile
from codemate_setup.manifest import (
    all_folders,
    parent_folders,
)
from codemate_setup.target import TargetFile, TargetState

logger = logging.getLogger(__name__)

_FILE_LIKE = (PathKind.FILE, PathKind.SYMLINK, PathKind.OTHER)
# The fields that must be equal for a file to stay as it is: kind, hash, size
# and mode.
_STATE_KEY = itemgetter(0, 1, 2, 3)
_TARGET_HASH = attrgetter("sha256")
_TARGET_SIZE = attrgetter("size")
_TARGET_MODE = attrgetter("mode")


class DiskView(Protocol):
    """Read access to the install folder, as the planner needs it."""

    def state(self, path: str) -> FileState:
        """Return what ``path`` is, with its hash when it is a file."""
        ...

    def states(self, paths: Sequence[str]) -> list[FileState]:
        """Return what each path is, as ``state`` does."""
        ...

    def kind(self, path: str) -> PathKind:
        """Return what ``path`` is, without reading it."""
        ...

    def tree(self, folder: str) -> list[tuple[str, PathKind]]:
        """List every entry below ``folder`` as release paths."""
        ...


class OpKind(str, Enum):
    """A kind of move in a plan, as stored in the journal."""

    BACKUP = "backup"
    RMDIR = "rmdir"
    MKDIR = "mkdir"
    PLACE = "place"
    CHMOD = "chmod"


@dataclass(frozen=True)
class Op:
    """One move of a plan; ``mode`` and ``old_mode`` are permission bits."""

    kind: OpKind
    path: str
    mode: int | None = None
    old_mode: int | None = None


@dataclass(frozen=True)
class Plan:
    """Downloads of an update and the moves that apply it.

    ``kept`` maps each target file already installed to its state on disk.
    ``moved_out`` maps each path the plan backs up to its state before the
    move.
    """

    downloads: tuple[TargetFile, ...]
    ops: tuple[Op, ...]
    kept: Mapping[str, FileState] = field(default_factory=dict)
    moved_out: Mapping[str, FileState] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """Whether applying the plan would change nothing."""
        return not self.downloads and not self.ops

    def count(self, kind: OpKind) -> int:
        """Return the number of moves of one kind."""
        return sum(1 for op in self.ops if op.kind is kind)


@dataclass
class _Builder:
    view: DiskView
    backups: dict[str, FileState] = field(default_factory=dict)
    rmdirs: set[str] = field(default_factory=set)
    mkdirs: set[str] = field(default_factory=set)
    places: list[Op] = field(default_factory=list)
    chmods: list[Op] = field(default_factory=list)

    def back_up(self, path: str) -> None:
        state = self.view.state(path)
        if state.kind in _FILE_LIKE:
            self.backups[path] = state
        else:
            logger.debug("nothing to move out at %s: it is %s", path, state.kind.value)

    def clear_folder(self, path: str, reason: str) -> None:
        for entry, kind in self.view.tree(path):
            if kind is PathKind.DIR:
                self.rmdirs.add(entry)
            elif entry not in self.backups:
                raise InstallError(
                    f"cannot {reason}: the folder {path!r} contains {entry!r}, "
                    "which no installed release owns; move it out of the install "
                    "folder and retry"
                )
        self.rmdirs.add(path)

    def ensure_parents(self, path: str) -> None:
        for folder in parent_folders(path):
            if folder in self.mkdirs:
                continue
            kind = self.view.kind(folder)
            if kind in (PathKind.DIR, PathKind.SYMLINK) and folder not in self.backups:
                continue
            if kind is PathKind.MISSING or folder in self.backups:
                self.mkdirs.add(folder)
                continue
            raise InstallError(
                f"cannot install {path!r}: {folder!r} is a file that no installed "
                "release owns; move it out of the install folder and retry"
            )

    def remove_emptied_folders(self, deleted: Iterable[str], keep: set[str]) -> None:
        candidates = {
            folder
            for path in deleted
            for folder in parent_folders(path)
            if folder not in keep
        }
        for folder in sorted(candidates, key=_depth, reverse=True):
            if folder in self.rmdirs or self.view.kind(folder) is not PathKind.DIR:
                continue
            if self.empties(folder):
                self.rmdirs.add(folder)

    def empties(self, folder: str) -> bool:
        """Tell whether every entry below ``folder`` is moved out or removed."""
        return all(
            self._goes_away(entry, kind) for entry, kind in self.view.tree(folder)
        )

    def _goes_away(self, entry: str, kind: PathKind) -> bool:
        if kind is PathKind.DIR:
            return entry in self.rmdirs
        return entry in self.backups

    def ops(self) -> tuple[Op, ...]:
        ordered = [Op(OpKind.BACKUP, path) for path in sorted(self.backups)]
        ordered += [
            Op(OpKind.RMDIR, path)
            for path in sorted(self.rmdirs, key=lambda p: (-_depth(p), p))
        ]
        ordered += [
            Op(OpKind.MKDIR, path)
            for path in sorted(self.mkdirs, key=lambda p: (_depth(p), p))
        ]
        ordered += sorted(self.places, key=lambda op: op.path)
        ordered += sorted(self.chmods, key=lambda op: op.path)
        return tuple(ordered)


def build_plan(
    target: TargetState,
    owned: Mapping[str, InstalledFile] | None,
    view: DiskView,
    *,
    compare_modes: bool = True,
) -> Plan:
    """Plan the downloads and moves that turn the install into ``target``.

    A target file is downloaded only when the installed file differs from
    its declared hash (always, when the manifest gives no hash). Files no
    listing owns are never moved, unless the target version installs a file
    at their path, in which case they are backed up first.

    Args:
        target: The files of the target version.
        owned: The installed listing's files; None when there is no listing,
            in which case only paths that legacy manifests delete are removed.
        view: Read access to the install folder.
        compare_modes: Whether to correct modes of unchanged files (False on
            Windows, where files have no POSIX modes).

    Raises:
        InstallError: If a file or folder that no release owns is in the way.
        ManifestError: If a path leaves the install folder.
    """
    builder = _Builder(view)

    if owned is not None:
        deleted = sorted(set(owned) - set(target.files))
    else:
        deleted = sorted(target.deleted - set(target.files))
    for path in deleted:
        builder.back_up(path)

    paths = sorted(target.files)
    states = view.states(paths)
    expected_files = list(map(target.files.__getitem__, paths))
    kept, unsettled = _split_unchanged(paths, states, expected_files)

    downloads: list[TargetFile] = []
    for path, state, expected in unsettled:
        if _matches(state, expected):
            kept[path] = state
            if (
                compare_modes
                and expected.mode is not None
                and state.mode != expected.mode
            ):
                builder.chmods.append(Op(OpKind.CHMOD, path, expected.mode, state.mode))
            continue

        downloads.append(expected)
        mode = expected.mode
        if mode is None and state.kind is PathKind.FILE:
            # NOTE: legacy manifests carry no modes, so a replaced file keeps
            # its mode and a new file gets the default mode. Executable bits
            # that a legacy release adds or removes are not applied.
            mode = state.mode
        builder.places.append(Op(OpKind.PLACE, path, mode=mode))
        if state.kind in _FILE_LIKE:
            builder.backups[path] = state
        elif state.kind is PathKind.DIR:
            builder.clear_folder(path, f"replace the folder {path!r} with a file")
        builder.ensure_parents(path)

    builder.remove_emptied_folders(
        [path for path in builder.backups if path not in target.files],
        all_folders(target.files),
    )

    plan = Plan(tuple(downloads), builder.ops(), kept, dict(builder.backups))
    logger.debug(
        "plan for %s: %d downloads, %d moves, %d files kept",
        target.version,
        len(plan.downloads),
        len(plan.ops),
        len(kept),
    )
    return plan


def _split_unchanged(
    paths: list[str], states: list[FileState], expected: list[TargetFile]
) -> tuple[dict[str, FileState], list[tuple[str, FileState, TargetFile]]]:
    """Separate the files whose hash, size and mode already match the target.

    Returns the matching files' states by path, and every other path with
    its state and target file, for :func:`_matches` to decide one by one.
    The comparisons run over all files at once, in C, because a large
    installation has tens of thousands of unchanged files.
    """
    found_keys = map(_STATE_KEY, states)
    target_keys = zip(
        repeat(PathKind.FILE),
        map(_TARGET_HASH, expected),
        map(_TARGET_SIZE, expected),
        map(_TARGET_MODE, expected),
    )
    settled = list(map(eq, found_keys, target_keys))
    kept = dict(compress(zip(paths, states, strict=True), settled))
    unsettled = list(
        compress(zip(paths, states, expected, strict=True), map(not_, settled))
    )
    return kept, unsettled


def _matches(state: FileState, expected: TargetFile) -> bool:
    # A declared size that contradicts a matching hash makes the entry suspect,
    # so the file is fetched again and the download's size check decides.
    return (
        state.kind is PathKind.FILE
        and expected.sha256 is not None
        and state.sha256 == expected.sha256
        and (expected.size is None or state.size == expected.size)
    )


def plan_restore(recorded: Sequence[Op], view: DiskView) -> Plan:
    """Plan the moves that undo a committed update, from its recorded moves.

    Files the update placed are moved out into a new backup; files it backed
    up come back from its backup; folders and modes are restored.

    Args:
        recorded: The moves of the committed update, in the order it ran them.
        view: Read access to the install folder.

    Raises:
        InstallError: If a file that the update did not create is in the way
            of a file to restore.
    """
    builder = _Builder(view)
    restored = [op.path for op in recorded if op.kind is OpKind.BACKUP]

    for op in recorded:
        if op.kind is OpKind.PLACE:
            builder.back_up(op.path)
    for path in restored:
        if path not in builder.backups:
            builder.back_up(path)

    created = [op.path for op in recorded if op.kind is OpKind.MKDIR]
    for folder in sorted(created, key=_depth, reverse=True):
        if view.kind(folder) is not PathKind.DIR:
            continue
        if folder in restored:
            builder.clear_folder(folder, f"restore the file {folder!r}")
        elif builder.empties(folder):
            builder.rmdirs.add(folder)
        else:
            logger.debug(
                "keeping %s: it contains files the update did not create", folder
            )

    for op in recorded:
        if op.kind is OpKind.RMDIR:
            builder.mkdirs.add(op.path)

    for path in restored:
        builder.places.append(Op(OpKind.PLACE, path))
        builder.ensure_parents(path)

    for op in recorded:
        if op.kind is OpKind.CHMOD and view.kind(op.path) is PathKind.FILE:
            builder.chmods.append(Op(OpKind.CHMOD, op.path, op.old_mode, op.mode))

    return Plan((), builder.ops(), {}, dict(builder.backups))


def _depth(path: str) -> int:
    return path.count("/")
