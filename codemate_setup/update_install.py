"""Steps 7 to 10 of an update: apply the plan in a transaction and commit it.

Step 7 moves the replaced and removed files into the backup, and step 8 runs
the remaining moves: folders, placed files and modes. Step 9 writes the new
listing, requirements file and backup record and commits. Step 10 removes
consumed and old backups, the staging files and the journal. A failure or a
cancel before the commit rolls every move back.
"""

from __future__ import annotations

import os
import threading
from itertools import compress, repeat
from operator import attrgetter, gt, itemgetter, ne
from pathlib import Path

from packaging.version import Version

from codemate_setup.backups import BackupRecord, stored_from_states
from codemate_setup.config import HomeLayout
from codemate_setup.fsutil import HAS_POSIX_MODES
from codemate_setup.gc_pause import CollectorPause
from codemate_setup.journal import TransactionKind
from codemate_setup.listing import PERMISSION_BITS, InstalledFile, InstalledListing
from codemate_setup.plan import OpKind, Plan
from codemate_setup.records import make_records
from codemate_setup.steps import StepReporter
from codemate_setup.target import TargetState
from codemate_setup.transaction import Transaction
from codemate_setup.transaction_paths import install_path

# The hash, size, mode and mtime of a FileState, as a listing records them.
_STORED_FIELDS = itemgetter(1, 2, 3, 4)
_RECORD_MODE = itemgetter(2)
_TARGET_MODE = attrgetter("mode")


def apply_update(
    layout: HomeLayout,
    state: TargetState,
    plan: Plan,
    hashes: dict[str, tuple[str, int]],
    staged: dict[str, Path],
    *,
    target: Version,
    from_version: str | None,
    keep_backups: int,
    reporter: StepReporter,
    cancel: threading.Event,
    collector: CollectorPause,
) -> Path:
    """Run steps 7 to 10 and return the transaction's backup folder.

    Args:
        layout: The home layout.
        state: The target release's files.
        plan: The moves from the installed files to the target's.
        hashes: The verified sha256 and size of each staged file, by release
            path.
        staged: The staged file of each release path.
        target: The version being installed.
        from_version: The installed version, or None for a first install.
        keep_backups: How many committed backups, newest first, to keep.
        reporter: Receives steps 7 to 10 and their progress.
        cancel: When set, the moves stop and are rolled back.
        collector: Paused while step 9 builds the new listing.
    """
    step = reporter.step
    backups = plan.count(OpKind.BACKUP)
    staging_files = layout.staging_dir / str(target) / "files"

    transaction = Transaction.begin(
        layout,
        ops=plan.ops,
        staging_dir=staging_files,
        from_version=from_version,
        to_version=str(target),
        keep_backups=keep_backups,
    )
    with transaction:
        with step(7):
            transaction.move_out(
                lambda done, _total: reporter.items(done, backups),
                cancel,
            )
        with step(8):
            transaction.move_in(
                lambda done, total: reporter.items(done - backups, total - backups),
                cancel,
            )
        with step(9), collector.paused():
            listing = new_listing(layout, target, state, plan, hashes)
            transaction.commit(
                listing=listing,
                requirements=requirements_source(layout, state, staged),
                record=BackupRecord(
                    path=transaction.backup_dir,
                    kind=TransactionKind.UPDATE,
                    from_version=from_version,
                    to_version=str(target),
                    created_at=transaction.journal.created_at,
                    transaction_id=transaction.journal.transaction_id,
                    ops=plan.ops,
                    stored=stored_from_states(plan.moved_out),
                ),
            )
        with step(10):
            transaction.finish()
    return transaction.backup_dir


def new_listing(
    layout: HomeLayout,
    target: Version,
    state: TargetState,
    plan: Plan,
    hashes: dict[str, tuple[str, int]],
) -> InstalledListing:
    """Build the installed listing of ``target`` after its files were placed.

    Kept files take their recorded state, with the target's mode where step 8
    changed it. Placed files take the verified hash and a fresh ``os.stat``
    of the installed file.
    """
    kept = _kept_records(state, plan)
    files = {}
    for path in state.files:
        record = kept.get(path)
        if record is None:
            info = os.stat(install_path(layout.install_dir, path))
            record = InstalledFile(
                sha256=hashes[path][0],
                size=info.st_size,
                mode=info.st_mode & PERMISSION_BITS,
                mtime_ns=info.st_mtime_ns,
            )
        files[path] = record

    return InstalledListing(
        version=str(target),
        files=files,
        entry_point=state.entry_point,
        requirements=state.requirements,
    )


def _kept_records(state: TargetState, plan: Plan) -> dict[str, InstalledFile]:
    """Return the listing records of the files the plan keeps, by path.

    The records are built for all kept files at once, in C; only files whose
    mode the target changes are then handled one by one.
    """
    kept = plan.kept
    stored = make_records(InstalledFile, map(_STORED_FIELDS, kept.values()))
    records = dict(zip(kept, stored, strict=True))
    if HAS_POSIX_MODES:
        targets = list(map(state.files.__getitem__, records))
        modes = map(_RECORD_MODE, records.values())
        differ = map(ne, modes, map(_TARGET_MODE, targets))
        for target_file in compress(targets, differ):
            if target_file.mode is not None:
                records[target_file.path] = records[target_file.path]._replace(
                    mode=target_file.mode
                )

    # A listing records permission bits only, so the set-user-ID, set-group-ID
    # and sticky bits of a file kept as found are left out.
    special = map(gt, map(_RECORD_MODE, records.values()), repeat(PERMISSION_BITS))
    for path in list(compress(records, special)):
        mode = records[path].mode & PERMISSION_BITS
        records[path] = records[path]._replace(mode=mode)
    return records


def requirements_source(
    layout: HomeLayout, state: TargetState, staged: dict[str, Path]
) -> Path | None:
    """Return the file to store as the home's ``requirements.txt``, if any."""
    if state.requirements is None:
        return None
    if state.requirements in state.files:
        return install_path(layout.install_dir, state.requirements)
    return staged.get(state.requirements)
