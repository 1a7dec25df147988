"""The rollback history: one folder per committed transaction under ``backups/``.

A backup folder contains what is needed to undo its transaction exactly::

    backups/2.9.0-20240101T120000123456Z/
        backup.json   versions, the transaction's moves, the stored files' hashes
        files/        the files the transaction moved out, in a flat store
        home/         installed.json, version.txt, requirements.txt as they were

``backup.json`` is written only when the transaction commits, so a folder
without it belongs to an unfinished transaction and is never offered for
rollback.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codemate_setup.errors import UsageError
from codemate_setup.filestore import remove_tree
from codemate_setup.fsutil import atomic_write_json
from codemate_setup.install_view import FileState
from codemate_setup.journal import TransactionKind, ops_from_documents, ops_to_documents
from codemate_setup.manifest import format_mode, parse_mode
from codemate_setup.plan import Op

logger = logging.getLogger(__name__)

BACKUP_FORMAT = 1
RECORD_NAME = "backup.json"


@dataclass(frozen=True)
class StoredFile:
    """A file kept in a backup; ``sha256`` is None for links and special files."""

    sha256: str | None
    size: int | None
    mode: int | None


@dataclass(frozen=True)
class BackupRecord:
    """One committed transaction that can be undone from its backup folder."""

    path: Path
    kind: TransactionKind
    from_version: str | None
    to_version: str
    created_at: str
    transaction_id: str
    ops: tuple[Op, ...]
    stored: Mapping[str, StoredFile]

    @property
    def name(self) -> str:
        """The backup folder's name, as shown by ``--list-backups``."""
        return self.path.name

    def to_document(self) -> dict[str, Any]:
        """Return the JSON document stored as ``backup.json``."""
        return {
            "format": BACKUP_FORMAT,
            "kind": self.kind.value,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "created_at": self.created_at,
            "transaction_id": self.transaction_id,
            "ops": ops_to_documents(self.ops),
            "stored": {
                path: {
                    "sha256": entry.sha256,
                    "size": entry.size,
                    "mode": format_mode(entry.mode) if entry.mode is not None else None,
                }
                for path, entry in sorted(self.stored.items())
            },
        }


def stored_from_states(states: Mapping[str, FileState]) -> dict[str, StoredFile]:
    """Describe moved-out files by the states the planner saw."""
    return {
        path: StoredFile(state.sha256, state.size, state.mode)
        for path, state in states.items()
    }


def utc_stamp(now: dt.datetime | None = None) -> str:
    """Return a sortable UTC timestamp for folder names, with microseconds."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def create_backup_dir(backups_dir: Path, from_version: str | None) -> Path:
    """Create a new, empty backup folder named after the version it keeps.

    Raises:
        OSError: If the folder cannot be created.
    """
    backups_dir.mkdir(parents=True, exist_ok=True)
    label = from_version or "none"
    for attempt in range(100):
        suffix = f"-{attempt}" if attempt else ""
        folder = backups_dir / f"{label}-{utc_stamp()}{suffix}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        (folder / "files").mkdir()
        (folder / "home").mkdir()
        return folder
    raise FileExistsError(f"cannot create a new backup folder in {backups_dir}")


def write_record(record: BackupRecord) -> None:
    """Write ``backup.json`` into the record's folder, atomically."""
    # Compact: a record lists every move, and indenting 5,000 of them costs
    # about three times as long to encode.
    atomic_write_json(record.path / RECORD_NAME, record.to_document(), compact=True)


def read_record(folder: Path) -> BackupRecord | None:
    """Read a backup folder's record.

    Returns:
        The record, or None when the folder has no valid ``backup.json``.
    """
    try:
        document = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
        return _record_from_document(folder, document)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning(
            "ignoring the backup %s: invalid %s (%s)", folder, RECORD_NAME, e
        )
        return None


def _record_from_document(folder: Path, document: Any) -> BackupRecord:
    if document.get("format") != BACKUP_FORMAT:
        raise ValueError(f"unknown backup format {document.get('format')!r}")

    stored = {}
    for path, entry in document["stored"].items():
        mode = entry.get("mode")
        stored[path] = StoredFile(
            sha256=entry.get("sha256"),
            size=entry.get("size"),
            mode=parse_mode(mode) if mode is not None else None,
        )

    return BackupRecord(
        path=folder,
        kind=TransactionKind(document["kind"]),
        from_version=document.get("from_version"),
        to_version=str(document["to_version"]),
        created_at=str(document["created_at"]),
        transaction_id=str(document["transaction_id"]),
        ops=ops_from_documents(document["ops"]),
        stored=stored,
    )


def list_backups(backups_dir: Path) -> list[BackupRecord]:
    """Return the committed backups, newest first."""
    if not backups_dir.is_dir():
        return []
    records = [
        record
        for folder in backups_dir.iterdir()
        if folder.is_dir() and (record := read_record(folder)) is not None
    ]
    return sorted(records, key=lambda r: (r.created_at, r.name), reverse=True)


def prune_backups(backups_dir: Path, keep: int) -> list[Path]:
    """Delete committed backups beyond the newest ``keep``.

    Returns:
        The folders removed.
    """
    removed = []
    for record in list_backups(backups_dir)[max(keep, 0) :]:
        remove_tree(record.path)
        removed.append(record.path)
        logger.info("removed the old backup %s", record.name)
    return removed


def find_restore_chain(
    records: Sequence[BackupRecord], current: str, target: str | None
) -> list[BackupRecord]:
    """Choose the backups that lead from the installed version to ``target``.

    Each backup undoes one transaction, from its ``to_version`` back to its
    ``from_version``. Without a target, the newest backup that leads from the
    installed version to another version is used. Newer backups are preferred
    when several paths exist.

    Args:
        records: Committed backups, newest first.
        current: The installed version.
        target: The version to restore, or None for the previous one.

    Raises:
        UsageError: If no chain of backups leads to the target.
    """
    usable = [r for r in records if r.from_version is not None]
    if target is None:
        for record in usable:
            # A repair of the same version is skipped: undoing it would only
            # bring back the damaged files it replaced.
            if record.to_version == current and record.from_version != current:
                return [record]
        raise UsageError(
            f"no backup of the version installed before {current} is kept; "
            "run update.py --list-backups to see the backups, or install an "
            "older release with update.py VERSION --allow-downgrade"
        )

    chain = _shortest_chain(usable, current, target)
    if chain is None:
        known = sorted({r.from_version for r in usable if r.from_version})
        raise UsageError(
            f"no backup leads from {current} back to {target} (backed-up versions: "
            f"{', '.join(known) or 'none'}); install it from the middleware with "
            f"update.py {target} --allow-downgrade"
        )
    return chain


def _shortest_chain(
    records: Sequence[BackupRecord], current: str, target: str
) -> list[BackupRecord] | None:
    queue: deque[tuple[str, list[BackupRecord]]] = deque([(current, [])])
    seen = {current}
    while queue:
        version, chain = queue.popleft()
        if version == target:
            return chain
        for record in records:
            step = record.from_version
            if record.to_version == version and step is not None and step not in seen:
                seen.add(step)
                queue.append((step, [*chain, record]))
    return None
