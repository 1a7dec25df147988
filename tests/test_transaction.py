"""The transaction on local folders: apply, commit, roll back, recover.

A crash is imitated in this process by abandoning a transaction at a fault
point without rolling it back, then running recovery as the next process
would. ``test_transaction_kill.py`` does the same with real SIGKILLs.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from conftest import make_tree
from packaging.version import Version

from codemate_setup.backups import BackupRecord, list_backups, stored_from_states
from codemate_setup.config import HomeLayout
from codemate_setup.errors import InstallError, SetupCancelledError, SetupError
from codemate_setup.filestore import store_path
from codemate_setup.homefiles import prepare_folders
from codemate_setup.install_view import InstallView
from codemate_setup.journal import TransactionKind
from codemate_setup.listing import (
    InstalledFile,
    InstalledListing,
    load_listing,
)
from codemate_setup.plan import Plan, build_plan
from codemate_setup.target import TargetFile, TargetState
from codemate_setup.testhooks import FAIL_VARIABLE
from codemate_setup.transaction import Transaction
from codemate_setup.transaction_recovery import recover

OLD = {
    "main.py": b"print('old')\n",
    "same.py": b"unchanged\n",
    "gone.py": b"deleted in new\n",
    "tools": b"a file that becomes a folder\n",
    "pkg/mod.py": b"old module\n",
    "pkg/data/blob.bin": bytes(range(256)),
    "run.sh": b"#!/bin/sh\n",
}
NEW = {
    "main.py": b"print('new')\n",
    "same.py": b"unchanged\n",
    "added.py": b"added in new\n",
    "tools/run.py": b"now inside a folder\n",
    "pkg": b"a file where the folder was\n",
    "run.sh": b"#!/bin/sh\n",
}
OLD_MODES = {"run.sh": 0o644}
NEW_MODES = {"run.sh": 0o755}
USER_FILES = {".env": b"SECRET=1\n", "notes/mine.txt": b"user notes\n"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    result = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            result[path.relative_to(root).as_posix()] = (
                path.read_bytes(),
                path.stat().st_mode & 0o777,
            )
    return result


def expected_tree(files: dict[str, bytes], modes: dict[str, int]) -> dict:
    tree = {path: (data, modes.get(path, 0o644)) for path, data in files.items()}
    tree.update({path: (data, 0o644) for path, data in USER_FILES.items()})
    return tree


def target_state(files: dict[str, bytes], version: str, modes: dict) -> TargetState:
    parsed = Version(version)
    return TargetState(
        version=parsed,
        files={
            path: TargetFile(path, parsed, sha(data), len(data), modes.get(path, 0o644))
            for path, data in files.items()
        },
        requirements=None,
    )


class Update:
    """A transaction from the installed version to ``files``, step by step."""

    def __init__(self, layout: HomeLayout, files: dict, version: str, modes: dict):
        prepare_folders(layout)
        self.layout = layout
        self.files = files
        self.version = version
        listing = load_listing(layout.installed_listing)
        self.from_version = listing.version if listing else None
        self.target = target_state(files, version, modes)
        owned = listing.files if listing else None
        self.plan: Plan = build_plan(
            self.target, owned, InstallView(layout.install_dir, listing)
        )
        staging = layout.staging_dir / version / "files"
        staging.mkdir(parents=True, exist_ok=True)
        for item in self.plan.downloads:
            store_path(staging, item.path).write_bytes(files[item.path])
        self.transaction = Transaction.begin(
            layout,
            ops=self.plan.ops,
            staging_dir=staging,
            from_version=self.from_version,
            to_version=version,
            keep_backups=3,
        )

    def apply_and_commit(self, cancel: threading.Event | None = None) -> None:
        tx = self.transaction
        tx.move_out(cancel=cancel)
        tx.move_in(cancel=cancel)
        tx.commit(
            listing=self.listing(),
            requirements=None,
            record=BackupRecord(
                path=tx.backup_dir,
                kind=TransactionKind.UPDATE,
                from_version=self.from_version,
                to_version=self.version,
                created_at=tx.journal.created_at,
                transaction_id=tx.journal.transaction_id,
                ops=self.plan.ops,
                stored=stored_from_states(self.plan.moved_out),
            ),
        )
        tx.finish()

    def listing(self) -> InstalledListing:
        entries = {}
        for path, data in self.files.items():
            info = (self.layout.install_dir / path).stat()
            entries[path] = InstalledFile(
                sha(data), info.st_size, info.st_mode & 0o777, info.st_mtime_ns
            )
        return InstalledListing(self.version, entries)


def install(layout: HomeLayout, files: dict, version: str, modes: dict) -> None:
    Update(layout, files, version, modes).apply_and_commit()


@pytest.fixture
def layout(tmp_path: Path) -> HomeLayout:
    """A home with OLD installed at 2.0.0 and user files in the install folder."""
    home = HomeLayout.create(tmp_path / "home")
    install(home, OLD, "2.0.0", OLD_MODES)
    make_tree(home.install_dir, USER_FILES)
    for path in USER_FILES:
        (home.install_dir / path).chmod(0o644)
    return home


def assert_old(layout: HomeLayout) -> None:
    assert snapshot(layout.install_dir) == expected_tree(OLD, OLD_MODES)
    assert layout.version_file.read_text() == "2.0.0\n"
    assert load_listing(layout.installed_listing).version == "2.0.0"
    assert not layout.journal_file.exists()


def assert_new(layout: HomeLayout) -> None:
    assert snapshot(layout.install_dir) == expected_tree(NEW, NEW_MODES)
    assert layout.version_file.read_text() == "3.0.0\n"
    assert load_listing(layout.installed_listing).version == "3.0.0"
    assert not layout.journal_file.exists()


def test_transaction_fresh_install(tmp_path: Path) -> None:
    home = HomeLayout.create(tmp_path / "home")

    install(home, OLD, "2.0.0", OLD_MODES)

    assert snapshot(home.install_dir) == {
        path: (data, OLD_MODES.get(path, 0o644)) for path, data in OLD.items()
    }
    assert list_backups(home.backups_dir) == []
    assert not home.journal_file.exists()


def test_transaction_update_reaches_new(layout: HomeLayout) -> None:
    Update(layout, NEW, "3.0.0", NEW_MODES).apply_and_commit()

    assert_new(layout)
    assert not layout.staging_dir.exists() or not any(layout.staging_dir.iterdir())


def test_transaction_listing_matches_disk(layout: HomeLayout) -> None:
    Update(layout, NEW, "3.0.0", NEW_MODES).apply_and_commit()

    listing = load_listing(layout.installed_listing)
    for path, entry in listing.files.items():
        info = (layout.install_dir / path).stat()
        assert entry.size == info.st_size, path
        assert entry.mtime_ns == info.st_mtime_ns, path
        assert entry.sha256 == sha(NEW[path]), path


def test_transaction_keeps_backup_record(layout: HomeLayout) -> None:
    Update(layout, NEW, "3.0.0", NEW_MODES).apply_and_commit()

    records = list_backups(layout.backups_dir)
    assert len(records) == 1
    assert records[0].from_version == "2.0.0"
    assert records[0].to_version == "3.0.0"
    assert sorted(records[0].stored) == [
        "gone.py",
        "main.py",
        "pkg/data/blob.bin",
        "pkg/mod.py",
        "tools",
    ]


def test_transaction_failure_rolls_back(
    layout: HomeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    update = Update(layout, NEW, "3.0.0", NEW_MODES)
    monkeypatch.setenv(FAIL_VARIABLE, "apply:after-move:6")

    with pytest.raises(InstallError) as caught, update.transaction:
        update.apply_and_commit()

    assert "No space left on device" in str(caught.value)
    assert "rolled back and 2.0.0 is still installed" in str(caught.value)
    assert_old(layout)
    assert list_backups(layout.backups_dir) == []
    assert list(layout.backups_dir.iterdir()) == []


def test_transaction_cancel_rolls_back(layout: HomeLayout) -> None:
    update = Update(layout, NEW, "3.0.0", NEW_MODES)
    cancel = threading.Event()
    cancel.set()

    with pytest.raises(SetupCancelledError), update.transaction:
        update.apply_and_commit(cancel)

    assert_old(layout)


def crash_points(layout: HomeLayout) -> list[str]:
    probe = Update(layout, NEW, "3.0.0", NEW_MODES)
    count = len(probe.plan.ops)
    probe.transaction.rollback()
    moves = [f"apply:after-move:{n}" for n in range(1, count + 1)]
    return [*moves, "commit:after-listing"] + [
        "commit:after-version",
        "commit:after-record",
    ]


def test_crash_before_commit_recovers_old(
    layout: HomeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    points = crash_points(layout)
    assert len(points) > 10

    for point in points:
        monkeypatch.setenv(FAIL_VARIABLE, point)
        with pytest.raises(SetupError):
            Update(layout, NEW, "3.0.0", NEW_MODES).apply_and_commit()
        monkeypatch.delenv(FAIL_VARIABLE)
        assert layout.journal_file.exists(), point

        outcome = recover(layout, keep_backups=3)

        assert outcome is not None, point
        assert outcome.action == "rolled_back", point
        assert_old(layout)
        assert list_backups(layout.backups_dir) == [], point


@pytest.mark.parametrize(
    "point", ["commit:after-mark", "finish:before-journal-removal"]
)
def test_crash_after_commit_recovers_new(
    layout: HomeLayout, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    monkeypatch.setenv(FAIL_VARIABLE, point)
    with pytest.raises((OSError, SetupError)):
        Update(layout, NEW, "3.0.0", NEW_MODES).apply_and_commit()
    monkeypatch.delenv(FAIL_VARIABLE)

    outcome = recover(layout, keep_backups=3)

    assert outcome is not None
    assert outcome.action == "completed"
    assert_new(layout)
    assert len(list_backups(layout.backups_dir)) == 1


def test_recovery_survives_crash_during_recovery(
    layout: HomeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAIL_VARIABLE, "apply:after-move:8")
    with pytest.raises(SetupError):
        Update(layout, NEW, "3.0.0", NEW_MODES).apply_and_commit()

    for undone in (2, 5):
        monkeypatch.setenv(FAIL_VARIABLE, f"recover:after-undo:{undone}")
        with pytest.raises(OSError):
            recover(layout, keep_backups=3)
    monkeypatch.delenv(FAIL_VARIABLE)
    outcome = recover(layout, keep_backups=3)

    assert outcome is not None
    assert_old(layout)


def test_recovery_twice_changes_nothing(
    layout: HomeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAIL_VARIABLE, "apply:after-move:4")
    with pytest.raises(SetupError):
        Update(layout, NEW, "3.0.0", NEW_MODES).apply_and_commit()
    monkeypatch.delenv(FAIL_VARIABLE)

    first = recover(layout, keep_backups=3)
    second = recover(layout, keep_backups=3)

    assert first is not None
    assert second is None
    assert_old(layout)


def test_recovery_without_journal_returns_none(layout: HomeLayout) -> None:
    assert recover(layout, keep_backups=3) is None
    assert_old(layout)


def test_invalid_journal_is_kept(layout: HomeLayout) -> None:
    layout.journal_file.write_text("{not json")

    with pytest.raises(InstallError) as caught:
        recover(layout, keep_backups=3)

    assert "is invalid" in str(caught.value)
    assert layout.journal_file.read_text() == "{not json"


def test_begin_refuses_unfinished_journal(
    layout: HomeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAIL_VARIABLE, "apply:after-move:1")
    with pytest.raises(SetupError):
        Update(layout, NEW, "3.0.0", NEW_MODES).apply_and_commit()
    monkeypatch.delenv(FAIL_VARIABLE)

    with pytest.raises(InstallError) as caught:
        Update(layout, NEW, "3.0.0", NEW_MODES)

    assert "run update.py --recover first" in str(caught.value)


def test_orphan_backup_folder_removed(layout: HomeLayout) -> None:
    orphan = layout.backups_dir / "2.0.0-20000101T000000000000Z"
    (orphan / "files").mkdir(parents=True)
    (orphan / "home").mkdir()

    recover(layout, keep_backups=3)

    assert not orphan.exists()


def test_old_backups_pruned_to_three(layout: HomeLayout) -> None:
    versions = ["2.1.0", "2.2.0", "2.3.0", "2.4.0", "2.5.0"]
    for version in versions:
        files = dict(OLD, **{"main.py": f"print('{version}')\n".encode()})
        install(layout, files, version, OLD_MODES)

    records = list_backups(layout.backups_dir)

    assert [r.from_version for r in records] == ["2.4.0", "2.3.0", "2.2.0"]
    assert len(list(layout.backups_dir.iterdir())) == 3


def test_home_files_restored_on_rollback(
    layout: HomeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout.requirements_file.write_text("requests==2.31.0\n")
    listing_before = layout.installed_listing.read_bytes()
    update = Update(layout, NEW, "3.0.0", NEW_MODES)
    monkeypatch.setenv(FAIL_VARIABLE, "commit:after-record")

    with pytest.raises(InstallError), update.transaction:
        update.apply_and_commit()

    assert layout.requirements_file.read_text() == "requests==2.31.0\n"
    assert layout.installed_listing.read_bytes() == listing_before
    assert layout.version_file.read_text() == "2.0.0\n"


def test_journal_records_planned_moves(layout: HomeLayout) -> None:
    update = Update(layout, NEW, "3.0.0", NEW_MODES)

    document = json.loads(layout.journal_file.read_text())
    update.transaction.rollback()

    assert document["state"] == "applying"
    assert document["from_version"] == "2.0.0"
    assert len(document["ops"]) == len(update.plan.ops)
    assert {"kind": "place", "path": "added.py", "mode": "0644"} in document["ops"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes only")
def test_transaction_sets_modes(layout: HomeLayout) -> None:
    Update(layout, NEW, "3.0.0", NEW_MODES).apply_and_commit()

    assert (layout.install_dir / "run.sh").stat().st_mode & 0o777 == 0o755
