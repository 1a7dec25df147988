"""The backups history: records, pruning and the choice of a restore chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from codemate_setup.backups import (
    BackupRecord,
    StoredFile,
    create_backup_dir,
    find_restore_chain,
    list_backups,
    prune_backups,
    read_record,
    write_record,
)
from codemate_setup.errors import UsageError
from codemate_setup.journal import TransactionKind
from codemate_setup.plan import Op, OpKind


def record(
    name: str, from_version: str | None, to_version: str, created: str
) -> BackupRecord:
    return BackupRecord(
        path=Path("/backups") / name,
        kind=TransactionKind.UPDATE,
        from_version=from_version,
        to_version=to_version,
        created_at=created,
        transaction_id=name,
        ops=(),
        stored={},
    )


def names(chain: list[BackupRecord]) -> list[str]:
    return [r.name for r in chain]


HISTORY = [
    record("d", "1.2.0", "1.2.0", "4"),
    record("c", "1.1.0", "1.2.0", "3"),
    record("b", "1.0.0", "1.1.0", "2"),
    record("a", None, "1.0.0", "1"),
]


def test_chain_previous_skips_repair() -> None:
    assert names(find_restore_chain(HISTORY, "1.2.0", None)) == ["c"]


def test_chain_two_steps_back() -> None:
    assert names(find_restore_chain(HISTORY, "1.2.0", "1.0.0")) == ["c", "b"]


def test_chain_to_installed_is_empty() -> None:
    assert find_restore_chain(HISTORY, "1.2.0", "1.2.0") == []


def test_chain_never_restores_nothing() -> None:
    with pytest.raises(UsageError) as caught:
        find_restore_chain(HISTORY, "1.0.0", None)

    assert "no backup of the version installed before 1.0.0" in str(caught.value)


def test_chain_unknown_target_names_versions() -> None:
    with pytest.raises(UsageError) as caught:
        find_restore_chain(HISTORY, "1.2.0", "0.9.0")

    message = str(caught.value)
    assert "no backup leads from 1.2.0 back to 0.9.0" in message
    assert "backed-up versions: 1.0.0, 1.1.0, 1.2.0" in message
    assert "update.py 0.9.0 --allow-downgrade" in message


def test_chain_prefers_newest_backup() -> None:
    history = [
        record("new", "1.0.0", "1.1.0", "5"),
        record("old", "1.0.0", "1.1.0", "2"),
    ]

    assert names(find_restore_chain(history, "1.1.0", None)) == ["new"]


def test_record_round_trip(tmp_path: Path) -> None:
    folder = create_backup_dir(tmp_path, "1.0.0")
    original = BackupRecord(
        path=folder,
        kind=TransactionKind.ROLLBACK,
        from_version="1.1.0",
        to_version="1.0.0",
        created_at="20240101T000000000000Z",
        transaction_id="t1",
        ops=(Op(OpKind.BACKUP, "a.py"), Op(OpKind.CHMOD, "b.sh", 0o755, 0o644)),
        stored={"a.py": StoredFile("f" * 64, 3, 0o644)},
    )

    write_record(original)

    assert read_record(folder) == original


def test_list_ignores_folder_without_record(tmp_path: Path) -> None:
    create_backup_dir(tmp_path, "1.0.0")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "backup.json").write_text("{")

    assert list_backups(tmp_path) == []


def test_prune_keeps_newest(tmp_path: Path) -> None:
    for index in range(5):
        folder = create_backup_dir(tmp_path, f"1.{index}.0")
        write_record(
            BackupRecord(
                folder,
                TransactionKind.UPDATE,
                f"1.{index}.0",
                f"1.{index + 1}.0",
                f"2024010{index}",
                str(index),
                (),
                {},
            )
        )

    removed = prune_backups(tmp_path, keep=2)

    assert len(removed) == 3
    assert [r.from_version for r in list_backups(tmp_path)] == ["1.4.0", "1.3.0"]


def test_backup_dir_names_unique(tmp_path: Path) -> None:
    first = create_backup_dir(tmp_path, "1.0.0")
    second = create_backup_dir(tmp_path, "1.0.0")

    assert first != second
    assert first.name.startswith("1.0.0-")
    assert (first / "files").is_dir()
