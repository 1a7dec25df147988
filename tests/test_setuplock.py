"""The setup lock: a brief probe is waited out, a held lock is reported busy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codemate_setup.config import HomeLayout
from codemate_setup.errors import SetupBusyError
from codemate_setup.setuplock import (
    BUSY_GRACE_SECONDS,
    hold_setup_lock,
    setup_lock_held,
)
from codemate_setup.state import lockfile

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the holder process uses flock"
)

# Takes the lock file's flock, prints "locked", then keeps it for argv[2] seconds.
HOLD_LOCK = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def layout(tmp_path) -> HomeLayout:
    layout = HomeLayout.create(tmp_path / "home")
    layout.home.mkdir(parents=True)
    layout.setup_lock.touch()
    return layout


def hold_in_child(lock: Path, seconds: float) -> subprocess.Popen:
    """Start a process that keeps ``lock`` locked for ``seconds``, once it has it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_setup_lock_waits_out_brief_probe(layout) -> None:
    # A probe of --wait or --status keeps the lock far shorter than the grace.
    holder = hold_in_child(layout.setup_lock, BUSY_GRACE_SECONDS / 4)

    try:
        with hold_setup_lock(layout) as descriptor:
            locked_descriptor = descriptor
    finally:
        holder.wait(timeout=10)

    assert isinstance(locked_descriptor, int)


def test_setup_lock_busy_after_grace(layout) -> None:
    holder = hold_in_child(layout.setup_lock, 30)

    try:
        with pytest.raises(SetupBusyError) as caught, hold_setup_lock(layout):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)

    assert f"another setup is running in {layout.home}" in str(caught.value)
    assert f"`setup_orchestrator.py --wait --home {layout.home}`" in str(caught.value)


def test_setup_lock_busy_inside_block(layout) -> None:
    with hold_setup_lock(layout):
        busy = setup_lock_held(layout)

    assert busy


def test_setup_lock_released_on_exit(layout) -> None:
    with hold_setup_lock(layout):
        pass

    assert not setup_lock_held(layout)


@pytest.fixture
def without_flock(monkeypatch) -> None:
    """Imitate Windows, where ``fcntl`` is missing and filelock locks instead."""
    # filelock is imported first, so it keeps an operating-system lock, as on
    # Windows. Imported without fcntl, it falls back to a lock file whose
    # mere existence counts as held.
    import filelock  # noqa: F401

    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setattr(lockfile, "fcntl", None)


def test_lock_probe_without_flock_finds_holder(layout, without_flock) -> None:
    holder = hold_in_child(layout.setup_lock, 30)

    try:
        busy = setup_lock_held(layout)
    finally:
        holder.kill()
        holder.wait(timeout=10)

    assert busy


def test_lock_probe_without_flock_finds_free_lock(layout, without_flock) -> None:
    assert not setup_lock_held(layout)


def test_lock_probe_without_flock_missing_file(tmp_path, without_flock) -> None:
    layout = HomeLayout.create(tmp_path / "home")

    assert not setup_lock_held(layout)


def test_lock_wait_interrupted_closes_descriptor(layout, monkeypatch) -> None:
    def interrupt(descriptor: int, timeout: float) -> bool:
        # Ctrl+C while the setup waits for a busy lock.
        raise KeyboardInterrupt

    monkeypatch.setattr(lockfile, "_wait_for_flock", interrupt)
    open_before = len(os.listdir("/proc/self/fd"))

    with pytest.raises(KeyboardInterrupt), hold_setup_lock(layout):
        pass

    assert len(os.listdir("/proc/self/fd")) == open_before
