"""Apply a plan as a crash-safe transaction.

Protocol:

1. ``begin``: create the backup folder, write the journal (atomic, fsynced),
   copy the home files the transaction replaces into the backup.
2. ``move_out`` and ``move_in``: run the planned moves. Every move is a
   rename between the install folder and a flat store folder on the same
   file system.
3. ``commit``: fsync the touched folders; write ``installed.json``,
   ``version.txt``, ``requirements.txt`` and the backup record; mark the
   journal committed. The transaction commits at that last write.
4. ``finish``: drop consumed and old backups and the staging folder, then
   delete the journal. A crash before this step is finished by recovery.

Recovery, run before anything else by the next process: a committed journal
is finished; any other is undone move by move in reverse order. Each undo
looks at where the file is now, so it is correct whether or not its move
happened, and running it twice changes nothing. Then the home files are put
back from the backup's copies. The install folder ends byte for byte as the
old version or as the new one.

:mod:`codemate_setup.transaction_recovery` contains the undo, the clean-up
after a commit and the recovery, and :mod:`codemate_setup.transaction_paths`
contains the paths that both modules use.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from codemate_setup.backups import (
    BackupRecord,
    create_backup_dir,
    utc_stamp,
    write_record,
)
from codemate_setup.config import HomeLayout
from codemate_setup.errors import InstallError, SetupCancelledError
from codemate_setup.filestore import copy_file_atomic, remove_file, store_path
from codemate_setup.fsutil import (
    HAS_POSIX_MODES,
    atomic_write_bytes,
    replace_with_retry,
)
from codemate_setup.journal import (
    HOME_FILES,
    Journal,
    JournalState,
    TransactionKind,
    write_journal,
)
from codemate_setup.listing import InstalledListing, save_listing
from codemate_setup.plan import Op, OpKind
from codemate_setup.testhooks import fault_point
from codemate_setup.transaction_paths import home_file_paths, install_path, sync_folders
from codemate_setup.transaction_recovery import finish, undo

logger = logging.getLogger(__name__)

# Called after each move with the number of moves done and the total.
MoveProgress = Callable[[int, int], None]


class Transaction:
    """One journaled update or rollback of the install folder.

    Use :meth:`begin` to create one, and use it as a context manager: leaving
    the block with an exception before :meth:`commit` undoes every move.
    """

    def __init__(self, layout: HomeLayout, journal: Journal, keep_backups: int) -> None:
        self.layout = layout
        self.journal = journal
        self.keep_backups = keep_backups
        self._next = 0

    @classmethod
    def begin(
        cls,
        layout: HomeLayout,
        *,
        ops: Iterable[Op],
        staging_dir: Path,
        from_version: str | None,
        to_version: str,
        keep_backups: int,
        kind: TransactionKind = TransactionKind.UPDATE,
        consumed_backup: Path | None = None,
    ) -> Transaction:
        """Create the backup folder and the journal, before any move.

        Args:
            layout: The home folder layout.
            ops: The planned moves, in order.
            staging_dir: The flat store that placed files come from.
            from_version: The installed version, or None.
            to_version: The version the transaction installs.
            keep_backups: How many committed backups to keep afterwards.
            kind: An update, or the rollback of an earlier update.
            consumed_backup: For a rollback, the backup it restores from.

        Raises:
            InstallError: If the journal or backup cannot be written, or an
                earlier transaction's journal is still present.
        """
        if layout.journal_file.exists():
            raise InstallError(
                f"an unfinished update journal {layout.journal_file} exists; "
                "run update.py --recover first"
            )

        try:
            backup_dir = create_backup_dir(layout.backups_dir, from_version)
            paths = home_file_paths(layout)
            journal = Journal(
                transaction_id=f"{to_version}-{utc_stamp()}",
                kind=kind,
                state=JournalState.APPLYING,
                from_version=from_version,
                to_version=to_version,
                install_dir=layout.install_dir,
                staging_dir=staging_dir,
                backup_dir=backup_dir,
                consumed_backup=consumed_backup,
                home_files={name: paths[name].exists() for name in HOME_FILES},
                ops=tuple(ops),
                created_at=utc_stamp(),
            )
            write_journal(layout.journal_file, journal)
        except OSError as e:
            raise InstallError(
                f"cannot start the transaction in {layout.home}: {e}; "
                "check free space and permissions of the home folder"
            ) from e
        try:
            fault_point("apply:after-journal")
            for name in HOME_FILES:
                if journal.home_files[name]:
                    copy_file_atomic(paths[name], backup_dir / "home" / name)
        except OSError as e:
            undo(journal, layout)
            raise InstallError(
                f"cannot back up the home files of {layout.home}: {e}; "
                "check free space and permissions of the home folder"
            ) from e

        logger.info(
            "transaction %s started: %d moves, backup %s",
            journal.transaction_id,
            len(journal.ops),
            backup_dir.name,
        )
        return cls(layout, journal, keep_backups)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None or self.journal.state is JournalState.COMMITTED:
            return

        logger.warning(
            "rolling back transaction %s after: %s", self.journal.transaction_id, exc
        )
        self.rollback()
        if isinstance(exc, InstallError):
            raise InstallError(
                f"{exc}; the changes were rolled back and "
                f"{self.journal.from_version or 'the previous state'} is still "
                "installed"
            ) from exc

    @property
    def backup_dir(self) -> Path:
        """The folder that receives the files moved out."""
        return self.journal.backup_dir

    def move_out(
        self,
        on_progress: MoveProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Move every replaced or deleted file into the backup."""
        self._run(lambda op: op.kind is OpKind.BACKUP, on_progress, cancel)

    def move_in(
        self,
        on_progress: MoveProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Run the remaining moves: folders, placed files, modes."""
        self._run(lambda op: True, on_progress, cancel)

    def _run(
        self,
        selected: Callable[[Op], bool],
        on_progress: MoveProgress | None,
        cancel: threading.Event | None,
    ) -> None:
        ops = self.journal.ops
        total = len(ops)
        while self._next < total and selected(ops[self._next]):
            if cancel is not None and cancel.is_set():
                raise SetupCancelledError("the update was cancelled")

            op = ops[self._next]
            try:
                _apply_op(self.journal, op)
                self._next += 1
                fault_point(f"apply:after-move:{self._next}")
            except OSError as e:
                raise InstallError(f"{op.kind.value} of {op.path!r} failed: {e}") from e

            if on_progress is not None:
                on_progress(self._next, total)

    def commit(
        self,
        *,
        listing: InstalledListing | None,
        requirements: Path | None,
        record: BackupRecord,
    ) -> None:
        """Record the new version and mark the transaction committed.

        Args:
            listing: The installed listing of the new version, or None to
                remove ``installed.json``.
            requirements: The file to store as the home's ``requirements.txt``,
                or None to remove it.
            record: The backup record that makes the transaction undoable.

        Raises:
            InstallError: If a write fails; the transaction is then rolled
                back by the context manager.
        """
        if self._next != len(self.journal.ops):
            raise InstallError(
                f"cannot commit transaction {self.journal.transaction_id}: only "
                f"{self._next} of {len(self.journal.ops)} moves were applied"
            )

        try:
            sync_folders(self.journal)
            if listing is not None:
                save_listing(self.layout.installed_listing, listing)
            else:
                remove_file(self.layout.installed_listing)
            fault_point("commit:after-listing")

            text = f"{self.journal.to_version}\n".encode()
            atomic_write_bytes(self.layout.version_file, text)
            fault_point("commit:after-version")

            if requirements is not None:
                copy_file_atomic(requirements, self.layout.requirements_file)
            else:
                remove_file(self.layout.requirements_file)
            write_record(record)
            fault_point("commit:after-record")

            committed = self.journal.committed()
            write_journal(self.layout.journal_file, committed)
        except OSError as e:
            raise InstallError(
                f"recording version {self.journal.to_version} failed: {e}"
            ) from e

        self.journal = committed
        logger.info("transaction %s committed", committed.transaction_id)
        fault_point("commit:after-mark")

    def finish(self) -> None:
        """Drop consumed and old backups and the staging files, then the journal.

        Raises:
            InstallError: If a folder cannot be removed; the committed journal
                stays, so the next run finishes the clean-up.
        """
        try:
            finish(self.journal, self.layout, self.keep_backups)
        except OSError as e:
            raise InstallError(
                f"cleaning up after the update to {self.journal.to_version} "
                f"failed: {e}; the update itself is complete"
            ) from e

    def rollback(self) -> int:
        """Undo every move made so far and restore the home files.

        Returns:
            The number of moves undone.

        Raises:
            InstallError: If a move cannot be undone; the journal is kept so
                the next run can try again.
        """
        return undo(self.journal, self.layout)


def _apply_op(journal: Journal, op: Op) -> None:
    target = install_path(journal.install_dir, op.path)

    if op.kind is OpKind.BACKUP:
        replace_with_retry(target, store_path(journal.backup_dir / "files", op.path))
    elif op.kind is OpKind.RMDIR:
        os.rmdir(target)
    elif op.kind is OpKind.MKDIR:
        target.mkdir(exist_ok=True)
    elif op.kind is OpKind.PLACE:
        source = store_path(journal.staging_dir, op.path)
        if op.mode is not None and HAS_POSIX_MODES:
            os.chmod(source, op.mode)
        replace_with_retry(source, target)
    elif op.kind is OpKind.CHMOD and HAS_POSIX_MODES and op.mode is not None:
        os.chmod(target, op.mode)
