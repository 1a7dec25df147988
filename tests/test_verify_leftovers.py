"""Leftovers of a killed verification: recorded tools and an environment moved aside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from codemate_setup.state.liveness import process_start_time
from codemate_setup.verify.leftovers import (
    ChildRecords,
    StopResult,
    recording_children,
    restore_interrupted_rebuild,
)
from codemate_setup.verify.process import run_logged

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")


@pytest.fixture
def tool() -> Iterator[subprocess.Popen]:
    """A long-running tool in a process group of its own, as run_logged starts it."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def write_record(folder: Path, pid: int, start_time: object, owner_pid: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pid}.json"
    record = {
        "pid": pid,
        "start_time": start_time,
        "label": "pip install",
        "owner_pid": owner_pid,
        "owner_start_time": process_start_time(owner_pid),
    }
    path.write_text(json.dumps(record))
    return path


def test_stop_leftovers_kills_tool_of_dead_verification(
    tmp_path: Path, tool: subprocess.Popen
) -> None:
    folder = tmp_path / "children"
    record = write_record(folder, tool.pid, process_start_time(tool.pid), dead_pid())

    messages = ChildRecords(folder).stop_leftovers()

    assert messages == [
        StopResult(
            True,
            f"stopped pip install (pid {tool.pid}), left running by a verification "
            "that was killed",
        )
    ]
    assert tool.wait(timeout=5) == -9
    assert not record.exists()


def test_stop_leftovers_leaves_tool_of_live_verification(
    tmp_path: Path, tool: subprocess.Popen
) -> None:
    folder = tmp_path / "children"
    record = write_record(folder, tool.pid, process_start_time(tool.pid), os.getpid())

    messages = ChildRecords(folder).stop_leftovers()

    assert messages == []
    assert tool.poll() is None
    assert record.exists()


def test_stop_leftovers_spares_recycled_pid(
    tmp_path: Path, tool: subprocess.Popen
) -> None:
    folder = tmp_path / "children"
    started = process_start_time(tool.pid)
    record = write_record(folder, tool.pid, started - 3600, dead_pid())

    messages = ChildRecords(folder).stop_leftovers()

    assert messages == []
    assert tool.poll() is None
    assert not record.exists()


def test_stop_leftovers_drops_record_of_exited_tool(tmp_path: Path) -> None:
    folder = tmp_path / "children"
    record = write_record(folder, dead_pid(), 1.0, dead_pid())

    messages = ChildRecords(folder).stop_leftovers()

    assert messages == []
    assert not record.exists()


def test_stop_leftovers_drops_unreadable_record(tmp_path: Path) -> None:
    folder = tmp_path / "children"
    folder.mkdir()
    (folder / "123.json").write_text("{not json")

    messages = ChildRecords(folder).stop_leftovers()

    assert messages == []
    assert list(folder.iterdir()) == []


def test_stop_leftovers_without_folder_finds_nothing(tmp_path: Path) -> None:
    assert ChildRecords(tmp_path / "children").stop_leftovers() == []


def test_stop_leftovers_kills_tool_of_zombie_verification(
    tmp_path: Path, tool: subprocess.Popen
) -> None:
    folder = tmp_path / "children"
    owner = subprocess.Popen([sys.executable, "-c", "pass"])
    while psutil.Process(owner.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)
    record = write_record(folder, tool.pid, process_start_time(tool.pid), owner.pid)

    try:
        messages = ChildRecords(folder).stop_leftovers()
    finally:
        owner.wait()

    assert len(messages) == 1
    assert tool.wait(timeout=5) == -9
    assert not record.exists()


def test_stop_leftovers_spares_process_outside_own_session(tmp_path: Path) -> None:
    folder = tmp_path / "children"
    # Shares the process group of pytest, as no tool of run_logged does.
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        write_record(folder, sleeper.pid, process_start_time(sleeper.pid), dead_pid())

        messages = ChildRecords(folder).stop_leftovers()

        assert messages == []
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stop_leftovers_spares_own_process_group(tmp_path: Path) -> None:
    folder = tmp_path / "children"
    # The child leads a session and a process group, as a tool does, and finds
    # a record of itself: killing that group would kill the child.
    script = (
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "from codemate_setup.state.liveness import process_start_time\n"
        "from codemate_setup.verify.leftovers import ChildRecords\n"
        "folder = Path(sys.argv[1])\n"
        "pid = os.getpid()\n"
        "record = {'pid': pid, 'start_time': process_start_time(pid),\n"
        "          'label': 'x', 'owner_pid': int(sys.argv[2]),\n"
        "          'owner_start_time': 1.0}\n"
        "os.makedirs(folder)\n"
        "(folder / f'{pid}.json').write_text(json.dumps(record))\n"
        "print(len(ChildRecords(folder).stop_leftovers()))\n"
    )

    child = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(dead_pid())],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[1],
    )

    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "0"


@pytest.mark.parametrize("start_time", [None, "0", True, [1]])
def test_stop_leftovers_spares_invalid_start_time(
    tmp_path: Path, tool: subprocess.Popen, start_time: object
) -> None:
    folder = tmp_path / "children"
    record = write_record(folder, tool.pid, start_time, dead_pid())

    messages = ChildRecords(folder).stop_leftovers()

    assert messages == []
    assert tool.poll() is None
    assert not record.exists()


def test_stop_leftovers_spares_record_of_other_pid(
    tmp_path: Path, tool: subprocess.Popen
) -> None:
    folder = tmp_path / "children"
    record = write_record(folder, tool.pid, process_start_time(tool.pid), dead_pid())
    renamed = record.rename(folder / "1.json")

    messages = ChildRecords(folder).stop_leftovers()

    assert messages == []
    assert tool.poll() is None
    assert not renamed.exists()


def test_stop_leftovers_drops_oversized_record(tmp_path: Path) -> None:
    folder = tmp_path / "children"
    folder.mkdir()
    (folder / "123.json").write_text(" " * 100_000 + "{}")

    messages = ChildRecords(folder).stop_leftovers()

    assert messages == []
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("kind", ["folder", "fifo", "symlink"])
def test_stop_leftovers_ignores_non_file_record(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "children"
    folder.mkdir()
    path = folder / "123.json"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        target = tmp_path / "target.json"
        target.write_text("{}")
        path.symlink_to(target)

    messages = ChildRecords(folder).stop_leftovers()

    assert messages == []
    assert os.path.lexists(path)


def test_stop_leftovers_keeps_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "children"
    folder.mkdir()
    (folder / "settings.json").write_text("{}")
    (folder / "notes.txt").write_text("keep")

    ChildRecords(folder).stop_leftovers()

    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "settings.json"]


def test_stop_leftovers_with_file_as_folder_finds_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "children"
    folder.write_text("not a folder")

    assert ChildRecords(folder).stop_leftovers() == []


def test_run_logged_records_tool_while_it_runs(tmp_path: Path) -> None:
    folder = tmp_path / "children"
    show = "import os, sys; print(sorted(os.listdir(sys.argv[1])))"

    with recording_children(ChildRecords(folder)):
        result = run_logged(
            [sys.executable, "-c", show, str(folder)], timeout=30, label="lister"
        )

    listed = result.output_tail[-1]
    assert listed.startswith("['")
    assert listed.endswith(".json']")
    assert list(folder.iterdir()) == []


def test_run_logged_outside_recording_writes_nothing(tmp_path: Path) -> None:
    run_logged([sys.executable, "-c", "pass"], timeout=30, label="nothing")

    assert list(tmp_path.iterdir()) == []


def make_environment(folder: Path, marker: str) -> None:
    (folder / "bin").mkdir(parents=True)
    (folder / "marker").write_text(marker)


def test_restore_puts_back_environment_moved_aside(tmp_path: Path) -> None:
    env_dir = tmp_path / "environment"
    make_environment(tmp_path / ".environment.old-999999-1", "old")
    make_environment(env_dir, "half-built")

    message = restore_interrupted_rebuild(env_dir)

    assert message == (
        f"restored {env_dir} as it was before a rebuild that was interrupted, and "
        "deleted the half-built one"
    )
    assert (env_dir / "marker").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["environment"]


def test_restore_keeps_only_the_latest_aside(tmp_path: Path) -> None:
    env_dir = tmp_path / "environment"
    make_environment(tmp_path / ".environment.old-999999-1", "older")
    make_environment(tmp_path / ".environment.old-999999-2", "latest")

    restore_interrupted_rebuild(env_dir)

    assert (env_dir / "marker").read_text() == "latest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["environment"]


def test_restore_ignores_own_rebuild(tmp_path: Path) -> None:
    env_dir = tmp_path / "environment"
    own = tmp_path / f".environment.old-{os.getpid()}-1"
    make_environment(own, "mine")
    make_environment(env_dir, "building")

    message = restore_interrupted_rebuild(env_dir)

    assert message is None
    assert (env_dir / "marker").read_text() == "building"
    assert own.exists()


def test_restore_without_aside_changes_nothing(tmp_path: Path) -> None:
    env_dir = tmp_path / "environment"
    make_environment(env_dir, "current")

    assert restore_interrupted_rebuild(env_dir) is None
    assert (env_dir / "marker").read_text() == "current"


def test_restore_orders_asides_by_time_not_pid(tmp_path: Path) -> None:
    env_dir = tmp_path / "environment"
    make_environment(tmp_path / ".environment.old-9-200", "latest")
    make_environment(tmp_path / ".environment.old-10-100", "older")

    restore_interrupted_rebuild(env_dir)

    assert (env_dir / "marker").read_text() == "latest"


def test_restore_leaves_other_aside_names(tmp_path: Path) -> None:
    env_dir = tmp_path / "environment"
    make_environment(env_dir, "current")
    make_environment(tmp_path / ".environment.old-backup", "backup")
    make_environment(tmp_path / ".environment.old-5", "five")

    message = restore_interrupted_rebuild(env_dir)

    assert message is None
    assert (env_dir / "marker").read_text() == "current"
    assert (tmp_path / ".environment.old-backup" / "marker").read_text() == "backup"
    assert (tmp_path / ".environment.old-5" / "marker").read_text() == "five"


def test_restore_skips_aside_of_live_process(
    tmp_path: Path, tool: subprocess.Popen
) -> None:
    env_dir = tmp_path / "environment"
    aside = tmp_path / f".environment.old-{tool.pid}-{time.time_ns()}"
    make_environment(aside, "old")
    make_environment(env_dir, "building")

    message = restore_interrupted_rebuild(env_dir)

    assert message is None
    assert (env_dir / "marker").read_text() == "building"
    assert aside.exists()


def test_restore_treats_recycled_pid_as_dead(
    tmp_path: Path, tool: subprocess.Popen
) -> None:
    env_dir = tmp_path / "environment"
    # Moved aside an hour before the process with this pid started.
    moved_at_ns = int((process_start_time(tool.pid) - 3600) * 1e9)
    make_environment(tmp_path / f".environment.old-{tool.pid}-{moved_at_ns}", "old")
    make_environment(env_dir, "half-built")

    message = restore_interrupted_rebuild(env_dir)

    assert message is not None
    assert (env_dir / "marker").read_text() == "old"


def test_restore_keeps_data_behind_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make_environment(outside, "outside")
    home = tmp_path / "home"
    home.mkdir()
    env_dir = home / "environment"
    env_dir.symlink_to(outside)
    (home / ".environment.old-999999-1").symlink_to(outside)
    make_environment(home / ".environment.old-999999-2", "old")

    restore_interrupted_rebuild(env_dir)

    assert (outside / "marker").read_text() == "outside"
    assert (env_dir / "marker").read_text() == "old"
    assert sorted(p.name for p in home.iterdir()) == ["environment"]


def test_restore_deletes_unfinished_trash(tmp_path: Path) -> None:
    env_dir = tmp_path / "environment"
    make_environment(env_dir, "new")
    make_environment(tmp_path / ".environment.trash-999999-1", "old")

    message = restore_interrupted_rebuild(env_dir)

    assert message is None
    assert (env_dir / "marker").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["environment"]


def test_restore_after_kill_during_old_deletion(tmp_path: Path) -> None:
    env_dir = tmp_path / "environment"
    make_environment(env_dir, "old")
    # The rebuild succeeds, and SIGKILL hits while the old folder is deleted.
    script = (
        "import os, shutil, signal, sys\n"
        "from pathlib import Path\n"
        "from codemate_setup.verify import environment\n"
        "def killed(path, ignore_errors=False):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "shutil.rmtree = killed\n"
        "env_dir = Path(sys.argv[1])\n"
        "with environment.replacing_folder(env_dir):\n"
        "    (env_dir / 'bin').mkdir(parents=True)\n"
        "    (env_dir / 'marker').write_text('new')\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(env_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )

    message = restore_interrupted_rebuild(env_dir)

    assert child.returncode == -9, child.stderr
    assert message is None
    assert (env_dir / "marker").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["environment"]
