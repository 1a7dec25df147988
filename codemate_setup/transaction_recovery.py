"""Finish or undo a transaction, and recover one that a crash interrupted.

This module contains the undo of an uncommitted transaction, the clean-up
after a committed one, and :func:`recover`. The next process runs
:func:`recover` before anything else, and it undoes or finishes the
transaction of a journal left on disk. A live
:class:`~codemate_setup.transaction.Transaction` calls the same undo and
clean-up, so every step here must give the same result when run again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from codemate_setup.backups import RECORD_NAME, prune_backups
from codemate_setup.config import HomeLayout
from codemate_setup.errors import InstallError
from codemate_setup.filestore import (
    contains_files,
    copy_file_atomic,
    remove_file,
    remove_tree,
    store_path,
)
from codemate_setup.fsutil import HAS_POSIX_MODES, replace_with_retry
from codemate_setup.journal import (
    HOME_FILES,
    Journal,
    JournalState,
    TransactionKind,
    load_journal,
)
from codemate_setup.plan import Op, OpKind
from codemate_setup.testhooks import fault_point
from codemate_setup.transaction_paths import home_file_paths, install_path, sync_folders

logger = logging.getLogger(__name__)


def _undo_op(journal: Journal, op: Op) -> bool:
    target = install_path(journal.install_dir, op.path)

    if op.kind is OpKind.PLACE:
        source = store_path(journal.staging_dir, op.path)
        # The staged file is gone only if it was moved into place.
        if not os.path.lexists(source) and os.path.lexists(target):
            source.parent.mkdir(parents=True, exist_ok=True)
            replace_with_retry(target, source)
            return True
    elif op.kind is OpKind.BACKUP:
        stored = store_path(journal.backup_dir / "files", op.path)
        if os.path.lexists(stored):
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_with_retry(stored, target)
            return True
    elif op.kind is OpKind.MKDIR:
        try:
            target.rmdir()
            return True
        except FileNotFoundError:
            pass
        except OSError as e:
            logger.debug("keeping the folder %s: %s", target, e)
    elif op.kind is OpKind.RMDIR:
        if not target.is_dir():
            target.mkdir(parents=True)
            return True
    elif (
        op.kind is OpKind.CHMOD
        and HAS_POSIX_MODES
        and op.old_mode is not None
        and target.is_file()
        and not target.is_symlink()
    ):
        os.chmod(target, op.old_mode)
        return True
    return False


def undo(journal: Journal, layout: HomeLayout) -> int:
    """Undo an uncommitted transaction, whatever moves it made.

    Returns:
        The number of moves undone.

    Raises:
        InstallError: If a move cannot be undone; the journal is kept.
    """
    undone = 0
    for index, op in enumerate(reversed(journal.ops), start=1):
        try:
            undone += _undo_op(journal, op)
        except OSError as e:
            raise InstallError(
                f"rolling back {op.kind.value} of {op.path!r} failed: {e}; fix the "
                f"cause and run update.py --recover (the journal "
                f"{layout.journal_file} is kept)"
            ) from e
        fault_point(f"recover:after-undo:{index}")

    try:
        sync_folders(journal)
        _restore_home_files(journal, layout)
        _discard_backup(journal.backup_dir)
        remove_file(layout.journal_file)
    except OSError as e:
        raise InstallError(
            f"restoring the home files of {layout.home} failed: {e}; fix the "
            "cause and run update.py --recover"
        ) from e

    logger.info(
        "rolled back transaction %s: %d moves undone", journal.transaction_id, undone
    )
    return undone


def _restore_home_files(journal: Journal, layout: HomeLayout) -> None:
    paths = home_file_paths(layout)
    for name in HOME_FILES:
        copy = journal.backup_dir / "home" / name
        if not journal.home_files[name]:
            remove_file(paths[name])
        elif copy.exists():
            copy_file_atomic(copy, paths[name])
        # A file that existed but has no copy yet was never replaced.


def _discard_backup(backup_dir: Path) -> None:
    if contains_files(backup_dir / "files"):
        logger.warning(
            "keeping %s: it still contains files that were not moved back", backup_dir
        )
        return
    remove_tree(backup_dir)


def finish(journal: Journal, layout: HomeLayout, keep_backups: int) -> None:
    """Clean up after a committed transaction; safe to run more than once."""
    consumed = journal.consumed_backup
    if consumed is not None and consumed.parent == layout.backups_dir:
        remove_tree(consumed)

    if journal.from_version is None and not contains_files(
        journal.backup_dir / "files"
    ):
        # A fresh install that replaced nothing has nothing to roll back to.
        remove_tree(journal.backup_dir)

    prune_backups(layout.backups_dir, keep_backups)
    if journal.kind is TransactionKind.UPDATE:
        remove_tree(layout.staging_dir)

    fault_point("finish:before-journal-removal")
    remove_file(layout.journal_file)


@dataclass(frozen=True)
class RecoveryOutcome:
    """The result of recovering an interrupted transaction."""

    action: str
    kind: TransactionKind
    from_version: str | None
    to_version: str
    transaction_id: str
    moves_undone: int

    @property
    def installed_version(self) -> str | None:
        """The version installed after recovery."""
        return self.to_version if self.action == "completed" else self.from_version

    def describe(self) -> str:
        """Return one sentence for the terminal and the state file."""
        what = "update" if self.kind is TransactionKind.UPDATE else "rollback"
        if self.action == "completed":
            return (
                f"completed the interrupted {what} to {self.to_version}, which "
                "had already committed"
            )
        installed = self.from_version or "nothing"
        return (
            f"rolled back the interrupted {what} from {installed} to "
            f"{self.to_version}; {installed} is installed"
        )

    def to_document(self) -> dict[str, object]:
        """Return the JSON form used in the state file and ``--json`` output."""
        return {
            "action": self.action,
            "kind": self.kind.value,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "transaction_id": self.transaction_id,
            "moves_undone": self.moves_undone,
            "message": self.describe(),
        }


def recover(layout: HomeLayout, keep_backups: int) -> RecoveryOutcome | None:
    """Finish or undo a transaction that an earlier process left unfinished.

    Returns:
        What was done, or None when no transaction was unfinished.

    Raises:
        InstallError: If the journal is invalid or a move cannot be undone.
    """
    journal = load_journal(layout.journal_file)
    if journal is None:
        _remove_orphan_backups(layout.backups_dir)
        return None

    logger.warning(
        "found the unfinished transaction %s (%s to %s, %s)",
        journal.transaction_id,
        journal.from_version,
        journal.to_version,
        journal.state.value,
    )
    if journal.state is JournalState.COMMITTED:
        try:
            finish(journal, layout, keep_backups)
        except OSError as e:
            raise InstallError(
                f"finishing the committed update to {journal.to_version} failed: {e}"
            ) from e
        action, undone = "completed", 0
    else:
        action, undone = "rolled_back", undo(journal, layout)

    return RecoveryOutcome(
        action=action,
        kind=journal.kind,
        from_version=journal.from_version,
        to_version=journal.to_version,
        transaction_id=journal.transaction_id,
        moves_undone=undone,
    )


def _remove_orphan_backups(backups_dir: Path) -> None:
    """Delete backup folders a process left before writing its journal."""
    if not backups_dir.is_dir():
        return
    for folder in backups_dir.iterdir():
        if not folder.is_dir() or (folder / RECORD_NAME).exists():
            continue
        if contains_files(folder / "files"):
            logger.warning(
                "keeping the incomplete backup %s: it contains files", folder
            )
            continue
        logger.debug("removing the empty incomplete backup %s", folder)
        remove_tree(folder)
