"""The result of an update or rollback, and the words that describe it.

:class:`UpdateResult` is what ``run_update`` returns and ``update.py --json``
prints. This module also maps the kind of change to the result's action and
builds the one-line message of an applied update.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from packaging.version import Version

from codemate_setup.target import ChangeKind


@dataclass
class UpdateResult:
    """The outcome of an update or rollback, as printed by ``update.py --json``."""

    action: str
    from_version: str | None
    to_version: str
    message: str = ""
    files_downloaded: int = 0
    files_reused: int = 0
    bytes_downloaded: int = 0
    files_placed: int = 0
    files_removed: int = 0
    files_kept: int = 0
    files_rehashed: int = 0
    backup: str | None = None
    recovery: dict[str, Any] | None = None
    fallbacks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_document(self) -> dict[str, Any]:
        """Return the JSON form of the result."""
        return asdict(self)


def action_for_change(change: ChangeKind) -> str:
    """Return the result's action word for a change that was applied."""
    return {
        ChangeKind.INSTALL: "installed",
        ChangeKind.SAME: "repaired",
        ChangeKind.UPGRADE: "updated",
        ChangeKind.MAJOR_UPGRADE: "updated",
        ChangeKind.DOWNGRADE: "downgraded",
    }[change]


def describe_update(result: UpdateResult, target: Version) -> str:
    """Return the one-line message of a finished update or repair."""
    if result.action == "installed":
        return (
            f"Installed CodeMate {target}: {result.files_placed} files "
            f"placed, {result.files_kept} already present"
        )
    changed = (
        f"{result.files_downloaded} files downloaded, {result.files_placed} "
        f"replaced or added, {result.files_removed} removed"
    )
    if result.action == "repaired":
        return f"Repaired CodeMate {target}: {changed}"
    verb = "Downgraded" if result.action == "downgraded" else "Updated"
    return f"{verb} CodeMate from {result.from_version} to {target}: {changed}"
