"""Hostile cases of the setup lock and its hand-off to the phase child.

An ``--isolated`` orchestrator passes the descriptor of the held setup lock to
each phase child, so that a setup started after ``kill -9`` of the
orchestrator exits with code 3 until the child has rolled back and exited.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from orchestration import child_env, orchestrator_command

from codemate_setup.config import HomeLayout
from codemate_setup.errors import SetupBusyError, StateFileError, UsageError
from codemate_setup.setuplock import hold_setup_lock
from codemate_setup.testhooks import PAUSE_FILE_VARIABLE, PAUSE_VARIABLE

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and uses flock"
)

# Seconds until a paused process or a stopping child must have been seen.
MOMENT_TIMEOUT = 30.0


def start_setup(
    home: Path, url: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    args = ["3.0.0", "--middleware-url", url, "--home", str(home), "--yes"]
    return subprocess.Popen(
        orchestrator_command(*args, "--skip-verification", *extra),
        env=child_env(**(env or {})),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_paused_setup(
    home: Path, url: str, point: str, pause: Path, *extra: str
) -> subprocess.Popen:
    """Start a setup whose update pauses at ``point`` while ``pause`` exists."""
    env = {PAUSE_VARIABLE: point, PAUSE_FILE_VARIABLE: str(pause)}
    return start_setup(home, url, *extra, env=env)


def run_cli(home: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    command = orchestrator_command(*args, "--middleware-url", url, "--home", str(home))
    return subprocess.run(
        command + ["--yes", "--skip-verification"],
        capture_output=True,
        text=True,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def wait_for_file(path: Path) -> int:
    deadline = time.monotonic() + MOMENT_TIMEOUT
    while time.monotonic() < deadline:
        try:
            return int(path.read_text(encoding="ascii"))
        except (FileNotFoundError, ValueError):
            time.sleep(0.01)
    raise AssertionError(f"{path} was not written within {MOMENT_TIMEOUT} s")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def lock_holders(lock_path: Path) -> set[int]:
    """Return the pids of the processes with ``lock_path`` open."""
    holders = set()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) == str(lock_path):
                    holders.add(int(pid_dir.name))
        except OSError:
            continue
    return holders


def probe_lock(layout: HomeLayout) -> bool:
    """Take and drop the setup lock; return False when another setup has it."""
    try:
        with hold_setup_lock(layout):
            return True
    except SetupBusyError:
        return False


def take_lock(home: Path) -> None:
    with hold_setup_lock(HomeLayout.create(home)):
        pass


@pytest.fixture
def paused_child(tmp_path: Path, middleware) -> tuple[Path, int, Path]:
    """An isolated setup whose update child pauses after its first move, with
    its orchestrator killed by SIGKILL; yields the home, the child pid and the
    pause file."""
    home = tmp_path / "home"
    pause = tmp_path / "pause"
    setup = start_paused_setup(
        home, middleware.url, "apply:after-move:1", pause, "--isolated"
    )
    child = wait_for_file(pause)
    setup.send_signal(signal.SIGKILL)
    setup.wait(timeout=10)
    yield home, child, pause
    pause.unlink(missing_ok=True)
    deadline = time.monotonic() + MOMENT_TIMEOUT
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_handoff_new_setup_exits_three_while_child_pauses(paused_child, middleware):
    home, child, _pause = paused_child
    second = run_cli(home, middleware.url, "3.0.0", "--resume")
    assert second.returncode == 3, second.stderr
    assert "interrupted" in second.stderr
    assert alive(child)


def test_handoff_lock_never_shared_with_stopping_child(paused_child, middleware):
    home, child, pause = paused_child
    layout = HomeLayout.create(home)
    pause.unlink()
    acquired_at = None
    deadline = time.monotonic() + MOMENT_TIMEOUT
    while acquired_at is None and time.monotonic() < deadline:
        try:
            with hold_setup_lock(layout):
                acquired_at = time.monotonic()
                assert not alive(child), "the lock was taken while the child ran"
        except SetupBusyError:
            time.sleep(0.002)
    assert acquired_at is not None
    resumed = run_cli(home, middleware.url, "3.0.0", "--resume")
    assert resumed.returncode == 0, resumed.stderr


def test_handoff_status_while_child_stops(paused_child, middleware):
    home, _child, _pause = paused_child
    status = subprocess.run(
        orchestrator_command("--status", "--home", str(home)),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert "interrupted" in status.stdout
    assert "a phase process of this setup is still stopping" in status.stdout


def test_handoff_wait_returns_after_child_exits(paused_child, middleware):
    home, child, pause = paused_child
    waiter = subprocess.Popen(
        orchestrator_command("--wait", "--home", str(home), "--timeout", "20"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    time.sleep(1.0)
    still_waiting = waiter.poll() is None
    pause.unlink()
    waiter.wait(timeout=30)
    assert still_waiting, "--wait returned while the phase child held the lock"
    assert not alive(child)
    assert probe_lock(HomeLayout.create(home))


def test_handoff_only_orchestrator_and_child_hold_lock(tmp_path, middleware):
    home = tmp_path / "home"
    setup = start_setup(home, middleware.url, "--isolated")
    lock_path = home / "setup.lock"
    seen: set[int] = set()
    while setup.poll() is None:
        seen |= lock_holders(lock_path)
        time.sleep(0.01)
    assert setup.returncode == 0, setup.stderr.read()
    for pid in seen - {setup.pid}:
        try:
            command = " ".join(psutil.Process(pid).cmdline())
        except psutil.NoSuchProcess:
            continue
        assert "update.py" in command or "verification_env.py" in command, command


def test_normal_path_releases_lock_at_exit(tmp_path, middleware):
    home = tmp_path / "home"
    setup = start_setup(home, middleware.url, "--isolated")
    setup.wait(timeout=120)
    assert setup.returncode == 0
    assert probe_lock(HomeLayout.create(home))


def test_lock_deleted_during_setup_keeps_second_out(tmp_path, middleware):
    home = tmp_path / "home"
    pause = tmp_path / "pause"
    setup = start_paused_setup(
        home, middleware.url, "apply:after-move:1", pause, "--isolated"
    )
    try:
        wait_for_file(pause)
        (home / "setup.lock").unlink()
        second = run_cli(home, middleware.url, "3.0.0")
        assert second.returncode == 3, second.stderr
        assert f"pid {setup.pid}" in second.stderr
    finally:
        pause.unlink(missing_ok=True)
        setup.wait(timeout=60)


def test_lock_symlink_is_rejected(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    target = tmp_path / "precious"
    target.write_text("keep")
    (home / "setup.lock").symlink_to(target)
    with pytest.raises(StateFileError, match="not a regular file"):
        take_lock(home)
    assert target.read_text() == "keep"


def test_lock_folder_is_rejected(tmp_path):
    home = tmp_path / "home"
    (home / "setup.lock").mkdir(parents=True)
    with pytest.raises(StateFileError, match="not a regular file"):
        take_lock(home)


def test_lock_home_is_file_is_rejected(tmp_path):
    home = tmp_path / "home"
    home.write_text("")
    with pytest.raises(UsageError, match="not a folder"):
        HomeLayout.create(home)


@pytest.mark.skipif(shutil.which("mount") is None, reason="needs mount")
def test_lock_read_only_home_is_rejected(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    bound = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(home), str(home)], capture_output=True
    )
    if bound.returncode != 0:
        pytest.skip(f"a read-only bind mount failed: {bound.stderr!r}")
    try:
        with pytest.raises(StateFileError, match="cannot create the setup lock"):
            take_lock(home)
    finally:
        subprocess.run(["umount", str(home)], check=True)


def test_sigterm_releases_lock_for_next_setup(tmp_path, middleware):
    home = tmp_path / "home"
    pause = tmp_path / "pause"
    setup = start_paused_setup(
        home, middleware.url, "apply:after-journal", pause, "--isolated"
    )
    wait_for_file(pause)
    setup.send_signal(signal.SIGTERM)
    pause.unlink()
    code = setup.wait(timeout=60)
    assert code == 130
    assert probe_lock(HomeLayout.create(home))


def test_in_process_kill_frees_lock_at_once(tmp_path, middleware):
    home = tmp_path / "home"
    pause = tmp_path / "pause"
    setup = start_paused_setup(home, middleware.url, "apply:after-move:1", pause)
    wait_for_file(pause)
    setup.send_signal(signal.SIGKILL)
    setup.wait(timeout=10)
    assert probe_lock(HomeLayout.create(home))
