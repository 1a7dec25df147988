"""The transaction journal (``home/journal.json``): the planned moves of one update.

The journal is written once, atomically and fsynced, before the first move,
and rewritten once more when the transaction commits. It does not record
each move as it happens: every move is a rename between two fixed places (the
install folder and a flat store folder), so where the file is now tells
whether the move happened. That makes each move's undo idempotent and costs
no journal write per move.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from codemate_setup.errors import InstallError, ManifestError
from codemate_setup.fsutil import atomic_write_json
from codemate_setup.manifest import format_mode, parse_mode
from codemate_setup.paths import validate_release_path
from codemate_setup.plan import Op, OpKind

logger = logging.getLogger(__name__)

JOURNAL_FORMAT = 1

# Files of the home folder that a transaction replaces, keyed by their name in
# the backup's ``home/`` folder.
HOME_FILES = ("installed.json", "version.txt", "requirements.txt")


class JournalState(str, Enum):
    """Whether a transaction is still applying or has committed."""

    APPLYING = "applying"
    COMMITTED = "committed"


class TransactionKind(str, Enum):
    """The kind of a transaction: an update, or the undo of an earlier one."""

    UPDATE = "update"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Journal:
    """Everything recovery needs to finish or undo a transaction.

    ``staging_dir`` is the flat store the placed files come from;
    ``backup_dir`` receives the files moved out. ``consumed_backup`` is the
    backup a rollback restores from, deleted once the rollback commits.
    ``home_files`` records which home files existed before the transaction.
    """

    transaction_id: str
    kind: TransactionKind
    state: JournalState
    from_version: str | None
    to_version: str
    install_dir: Path
    staging_dir: Path
    backup_dir: Path
    consumed_backup: Path | None
    home_files: Mapping[str, bool]
    ops: tuple[Op, ...]
    created_at: str

    def committed(self) -> Journal:
        """Return the same journal marked committed."""
        return replace(self, state=JournalState.COMMITTED)

    def to_document(self) -> dict[str, Any]:
        """Return the JSON document stored on disk."""
        return {
            "format": JOURNAL_FORMAT,
            "transaction_id": self.transaction_id,
            "kind": self.kind.value,
            "state": self.state.value,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "install_dir": str(self.install_dir),
            "staging_dir": str(self.staging_dir),
            "backup_dir": str(self.backup_dir),
            "consumed_backup": (
                str(self.consumed_backup) if self.consumed_backup else None
            ),
            "home_files": dict(self.home_files),
            "created_at": self.created_at,
            "ops": ops_to_documents(self.ops),
        }


def op_to_document(op: Op) -> dict[str, Any]:
    """Return the JSON form of one move."""
    document: dict[str, Any] = {"kind": op.kind.value, "path": op.path}
    if op.mode is not None:
        document["mode"] = format_mode(op.mode)
    if op.old_mode is not None:
        document["old_mode"] = format_mode(op.old_mode)
    return document


def ops_to_documents(ops: Sequence[Op]) -> list[dict[str, Any]]:
    """Return the JSON form of a list of moves."""
    return [op_to_document(op) for op in ops]


def op_from_document(document: Mapping[str, Any]) -> Op:
    """Parse one stored move.

    Raises:
        ValueError: If a key is missing or invalid.
        ManifestError: If the path is not a safe release path.
    """
    mode = document.get("mode")
    old_mode = document.get("old_mode")
    return Op(
        kind=OpKind(document["kind"]),
        path=validate_release_path(document["path"]),
        mode=parse_mode(mode) if mode is not None else None,
        old_mode=parse_mode(old_mode) if old_mode is not None else None,
    )


def ops_from_documents(documents: object) -> tuple[Op, ...]:
    """Parse a stored list of moves.

    Raises:
        ValueError: If the list or one of its moves is invalid.
    """
    if not isinstance(documents, list):
        raise ValueError("'ops' must be a list")
    try:
        return tuple(op_from_document(item) for item in documents)
    except (KeyError, TypeError, ManifestError) as e:
        raise ValueError(f"invalid move in 'ops': {e}") from e


def write_journal(path: Path, journal: Journal) -> None:
    """Write the journal atomically and durably."""
    # Compact, as the backup record is: the journal lists every move too.
    atomic_write_json(path, journal.to_document(), compact=True)
    logger.debug(
        "journal %s: %s, %d moves",
        journal.transaction_id,
        journal.state.value,
        len(journal.ops),
    )


def load_journal(path: Path) -> Journal | None:
    """Read the journal of an unfinished transaction.

    Returns:
        The journal, or None when there is none.

    Raises:
        InstallError: If the journal exists but cannot be read or parsed; it
            is then left in place, because only it can undo the transaction.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InstallError(
            f"cannot read the update journal {path}: {e}; fix its permissions so "
            "the interrupted update can be rolled back"
        ) from e

    try:
        return _journal_from_document(json.loads(text))
    except (ValueError, KeyError, TypeError) as e:
        raise InstallError(
            f"the update journal {path} is invalid ({e}); the interrupted update "
            "cannot be rolled back automatically. Restore the install folder "
            "from the backups folder, then delete the journal"
        ) from e


def _journal_from_document(document: Any) -> Journal:
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object")
    if document.get("format") != JOURNAL_FORMAT:
        raise ValueError(f"unknown journal format {document.get('format')!r}")

    consumed = document.get("consumed_backup")
    return Journal(
        transaction_id=str(document["transaction_id"]),
        kind=TransactionKind(document["kind"]),
        state=JournalState(document["state"]),
        from_version=document.get("from_version"),
        to_version=str(document["to_version"]),
        install_dir=Path(document["install_dir"]),
        staging_dir=Path(document["staging_dir"]),
        backup_dir=Path(document["backup_dir"]),
        consumed_backup=Path(consumed) if consumed else None,
        home_files={name: bool(document["home_files"][name]) for name in HOME_FILES},
        ops=ops_from_documents(document["ops"]),
        created_at=str(document.get("created_at") or ""),
    )
