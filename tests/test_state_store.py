"""The state store's lock and write path: exclusion, temp files, other writers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import filelock
import pytest

from codemate_setup.errors import StateFileError
from codemate_setup.state import SetupTracker, StateStore
from codemate_setup.state.lockfile import StateLock


def write_counter_document(path: Path, value: int, padding: str = "") -> None:
    tracker = SetupTracker(path, durable=False)
    tracker.start_setup("3.0.0")
    tracker.close()
    document = json.loads(path.read_text())
    document["counter"] = value
    document["padding"] = padding
    path.write_text(json.dumps(document, ensure_ascii=False) + "\n")


def bump(document: dict | None) -> dict:
    assert document is not None
    document["counter"] += 1
    return document


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "setup_state.json", durable=False)


def test_state_lock_busy_returns_none(tmp_path: Path) -> None:
    first = StateLock(tmp_path / "setup_state.lock")
    second = StateLock(tmp_path / "setup_state.lock")
    token = first.acquire(1.0)
    assert token is not None
    assert second.acquire(0.05) is None
    first.release(token)


def test_state_lock_free_after_release(tmp_path: Path) -> None:
    lock = StateLock(tmp_path / "setup_state.lock")
    lock.release(lock.acquire(1.0))
    token = lock.acquire(0)
    assert token is not None
    lock.release(token)


def test_state_lock_excludes_other_thread(tmp_path: Path) -> None:
    lock = StateLock(tmp_path / "setup_state.lock")
    token = lock.acquire(1.0)
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(lock.acquire(0.05)))
    thread.start()
    thread.join()
    lock.release(token)
    assert results == [None]


def test_state_lock_excludes_filelock_user(tmp_path: Path) -> None:
    lock = StateLock(tmp_path / "setup_state.lock")
    token = lock.acquire(1.0)
    other = filelock.FileLock(str(tmp_path / "setup_state.lock"), thread_local=False)
    with pytest.raises(filelock.Timeout):
        other.acquire(timeout=0.05)
    lock.release(token)


def test_state_lock_waits_for_filelock_user(tmp_path: Path) -> None:
    other = filelock.FileLock(str(tmp_path / "setup_state.lock"), thread_local=False)
    other.acquire()
    threading.Timer(0.2, other.release).start()
    lock = StateLock(tmp_path / "setup_state.lock")
    token = lock.acquire(5.0)
    assert token is not None
    lock.release(token)


def test_store_reuses_leftover_temp_file(store: StateStore) -> None:
    write_counter_document(store.path, 1)
    store.temp_path.write_bytes(b'{"half a docum')
    store.transact(bump, timeout=1.0)
    assert not store.temp_path.exists()
    assert json.loads(store.path.read_text())["counter"] == 2


def test_store_sees_change_by_other_store(tmp_path: Path) -> None:
    path = tmp_path / "setup_state.json"
    write_counter_document(path, 0)
    first = StateStore(path, durable=False)
    second = StateStore(path, durable=False)
    first.transact(bump, timeout=1.0)
    second.transact(bump, timeout=1.0)
    first.transact(bump, timeout=1.0)
    assert json.loads(path.read_text())["counter"] == 3


def test_store_sees_same_size_rewrite(store: StateStore) -> None:
    write_counter_document(store.path, 1, "a")
    store.transact(bump, timeout=1.0)
    written = json.loads(store.path.read_text())
    written["padding"] = "b"
    store.path.write_text(json.dumps(written, ensure_ascii=False) + "\n")
    store.transact(bump, timeout=1.0)
    assert json.loads(store.path.read_text())["padding"] == "b"


def test_store_failed_write_keeps_file(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_counter_document(store.path, 1)
    before = store.path.read_bytes()

    def fail(self: StateStore, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StateStore, "_replace_file", fail)
    with pytest.raises(StateFileError, match="check free disk space"):
        store.transact(bump, timeout=1.0)
    assert store.path.read_bytes() == before


def test_store_rereads_after_failed_write(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_counter_document(store.path, 1)
    store.transact(bump, timeout=1.0)
    real_replace = StateStore._replace_file

    def fail(self: StateStore, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StateStore, "_replace_file", fail)
    with pytest.raises(StateFileError, match="check free disk space"):
        store.transact(bump, timeout=1.0)
    monkeypatch.setattr(StateStore, "_replace_file", real_replace)
    store.transact(bump, timeout=1.0)
    assert json.loads(store.path.read_text())["counter"] == 3


def test_store_never_follows_temp_link(store: StateStore, tmp_path: Path) -> None:
    write_counter_document(store.path, 1)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("keep me\n")
    store.temp_path.symlink_to(outside)
    store.transact(bump, timeout=1.0)
    assert outside.read_text() == "keep me\n"
    assert not store.path.is_symlink()
    assert json.loads(store.path.read_text())["counter"] == 2
