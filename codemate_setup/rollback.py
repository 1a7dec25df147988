"""Restore an earlier version from the backups history (``update.py --rollback``).

Each backup undoes one committed transaction. Restoring runs as a
transaction of its own whose staged files are the backup's files, so it is
as crash-safe as an update, and it keeps a backup of what it replaces: a
rollback can itself be rolled back.
"""

from __future__ import annotations

import logging
import threading

from packaging.version import Version

from codemate_setup.backups import (
    BackupRecord,
    find_restore_chain,
    list_backups,
    stored_from_states,
)
from codemate_setup.config import RunOptions
from codemate_setup.errors import (
    IntegrityError,
    SetupCancelledError,
    UsageError,
)
from codemate_setup.filestore import hash_file, store_path
from codemate_setup.homefiles import (
    prepare_folders,
    read_installed_version,
    recover_and_report,
)
from codemate_setup.install_view import InstallView
from codemate_setup.journal import TransactionKind
from codemate_setup.listing import load_listing
from codemate_setup.plan import OpKind, plan_restore
from codemate_setup.state import Phase, SetupTracker
from codemate_setup.steps import StepListener, StepReporter, run_reported_phase
from codemate_setup.transaction import Transaction
from codemate_setup.transaction_recovery import RecoveryOutcome
from codemate_setup.update_result import UpdateResult
from codemate_setup.versions import parse_version

logger = logging.getLogger(__name__)

PHASE = Phase.CODEBASE_UPDATE

ROLLBACK_STEPS = (
    "Initializing rollback",
    "Reading backup history",
    "Verifying backup files",
    "Restoring previous version",
    "Finalizing rollback",
)


def run_rollback(
    options: RunOptions,
    version: Version | str | None,
    *,
    tracker: SetupTracker,
    own_setup: bool,
    cancel: threading.Event | None = None,
    on_step: StepListener | None = None,
) -> UpdateResult:
    """Restore ``version`` (or the previous version) from the backups.

    Args:
        options: Home layout and limits; the middleware is not contacted.
        version: The version to restore; None undoes the newest transaction.
        tracker: Receives the ``codebase_update`` phase's steps.
        own_setup: Start and finish a setup of its own in the state file.
        cancel: When set before the restore starts, nothing is changed; once
            it started, the restore is undone.
        on_step: Called when each step starts.

    Raises:
        UsageError: If nothing is installed, or no chain of backups leads to
            ``version``.
        IntegrityError: If a backup's files are damaged; nothing was changed.
        InstallError: If restoring fails (the installed version is then kept).
    """
    target = None
    if version is not None:
        target = version if isinstance(version, Version) else parse_version(version)
    reporter = StepReporter(tracker, PHASE, ROLLBACK_STEPS, on_step)
    work = _Rollback(options, target, reporter, cancel or threading.Event())
    return run_reported_phase(
        reporter, own_setup, str(target) if target else None, work.run
    )


class _Rollback:
    def __init__(
        self,
        options: RunOptions,
        target: Version | None,
        reporter: StepReporter,
        cancel: threading.Event,
    ) -> None:
        self.layout = options.layout
        self.limits = options.limits
        self.target = target
        self.reporter = reporter
        self.cancel = cancel

    def run(self) -> UpdateResult:
        step = self.reporter.step
        with step(1):
            prepare_folders(self.layout)
            outcome = recover_and_report(
                self.layout, self.limits.keep_backups, self.reporter
            )
            installed = read_installed_version(self.layout)
            if installed is None:
                raise UsageError(
                    f"nothing is installed in {self.layout.install_dir}, so there "
                    "is nothing to roll back; install a version with update.py VERSION"
                )

        with step(2):
            target = str(self.target) if self.target else None
            chain = find_restore_chain(
                list_backups(self.layout.backups_dir), str(installed), target
            )
            logger.info("restoring through the backups %s", [r.name for r in chain])

        if not chain:
            return self._unchanged(str(installed), outcome)

        with step(3):
            for record in chain:
                verify_backup(record)
            if self.cancel.is_set():
                raise SetupCancelledError("the rollback was cancelled; nothing changed")

        result = UpdateResult(
            action="rolled_back",
            from_version=str(installed),
            to_version=str(chain[-1].from_version),
            recovery=outcome.to_document() if outcome else None,
        )
        with step(4):
            # NOTE: each backup in the chain is restored by a transaction of its
            # own, so a crash between two of them leaves the intermediate
            # version installed (complete and consistent, but not the target).
            for number, record in enumerate(chain, start=1):
                self._restore(record)
                self.reporter.items(number, len(chain))

        with step(5):
            result.backup = self._newest_backup_name()
            result.message = (
                f"Rolled back CodeMate from {installed} to {result.to_version}; "
                f"the replaced files are kept in the backup {result.backup}"
            )
        result.warnings = list(self.reporter.warnings)
        return result

    def _restore(self, record: BackupRecord) -> None:
        current = read_installed_version(self.layout)
        view = InstallView(
            self.layout.install_dir, load_listing(self.layout.installed_listing)
        )
        plan = plan_restore(record.ops, view)
        old_listing = load_listing(record.path / "home" / "installed.json")
        requirements = record.path / "home" / "requirements.txt"

        transaction = Transaction.begin(
            self.layout,
            ops=plan.ops,
            staging_dir=record.path / "files",
            from_version=str(current) if current else None,
            to_version=str(record.from_version),
            keep_backups=self.limits.keep_backups,
            kind=TransactionKind.ROLLBACK,
            consumed_backup=record.path,
        )
        with transaction:
            transaction.move_out(cancel=self.cancel)
            transaction.move_in(cancel=self.cancel)
            transaction.commit(
                listing=old_listing,
                requirements=requirements if requirements.exists() else None,
                record=BackupRecord(
                    path=transaction.backup_dir,
                    kind=TransactionKind.ROLLBACK,
                    from_version=str(current) if current else None,
                    to_version=str(record.from_version),
                    created_at=transaction.journal.created_at,
                    transaction_id=transaction.journal.transaction_id,
                    ops=plan.ops,
                    stored=stored_from_states(plan.moved_out),
                ),
            )
            transaction.finish()
        logger.info(
            "restored %s from the backup %s (%d files)",
            record.from_version,
            record.name,
            plan.count(OpKind.PLACE),
        )

    def _unchanged(
        self, installed: str, outcome: RecoveryOutcome | None
    ) -> UpdateResult:
        for number in range(3, len(ROLLBACK_STEPS) + 1):
            with self.reporter.step(number):
                pass
        return UpdateResult(
            action="unchanged",
            from_version=installed,
            to_version=installed,
            message=f"CodeMate {installed} is already installed; nothing changed",
            recovery=outcome.to_document() if outcome else None,
            warnings=list(self.reporter.warnings),
        )

    def _newest_backup_name(self) -> str | None:
        records = list_backups(self.layout.backups_dir)
        return records[0].name if records else None


def verify_backup(record: BackupRecord) -> None:
    """Check that a backup still contains every file it recorded, unchanged.

    Raises:
        IntegrityError: Naming the missing or changed file.
    """
    files_dir = record.path / "files"
    for op in record.ops:
        if op.kind is not OpKind.BACKUP:
            continue
        stored = store_path(files_dir, op.path)
        expected = record.stored.get(op.path)
        if not stored.exists() and not stored.is_symlink():
            raise IntegrityError(
                f"the backup {record.name} is missing its copy of {op.path!r}; "
                f"install {record.from_version} from the middleware with "
                f"update.py {record.from_version} --allow-downgrade instead"
            )
        if expected is None or expected.sha256 is None or stored.is_symlink():
            continue

        try:
            digest, _size = hash_file(stored)
        except OSError as e:
            raise IntegrityError(
                f"the backup {record.name} has an unreadable copy of {op.path!r}: "
                f"{e}; check the permissions of {files_dir}"
            ) from e
        if digest != expected.sha256:
            raise IntegrityError(
                f"the backup {record.name} contains a changed copy of {op.path!r} "
                f"(sha256 must be {expected.sha256}, found {digest}); install "
                f"{record.from_version} from the middleware with update.py "
                f"{record.from_version} --allow-downgrade instead"
            )
