"""kill -9 of update.py at many points of a real update, then the next run.

Each case kills a real ``update.py`` child with SIGKILL (through the
``CODEMATE_FAULT_KILL_AT`` test hook, or from the test during a download),
runs ``update.py --recover``, and checks that the install is byte for byte
the old or the new published tree, that ``version.txt`` and the installed
listing agree with it, and that the state file records the recovery.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from update_helpers import (
    child_env,
    install_home,
    installed_tree,
    installed_version,
    publish_releases,
    published_tree,
    read_state,
    run_cli,
    update_command,
    update_in_process,
)

from codemate_setup.middleware import FaultConfig, MiddlewareHandle
from codemate_setup.testhooks import KILL_VARIABLE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]

BIG = 2 * 1024 * 1024
USER_FILE = "notes/mine.txt"


def release_files(version: str) -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = {
        f"codemate/mod_{i:02d}.py": f"value = {i}\n" for i in range(20)
    }
    files["initiate.py"] = f"print('{version}')\n"
    files["data/model.bin"] = bytes([len(version)]) * BIG
    if version == "1.0.0":
        files.update(
            {
                "tools": "a file that becomes a folder\n",
                "plugins/a.py": "a\n",
                "plugins/sub/b.py": "b\n",
                "old/gone.py": "deleted later\n",
            }
        )
    else:
        for i in range(0, 20, 3):
            files[f"codemate/mod_{i:02d}.py"] = f"value = {i} + 1\n"
        del files["codemate/mod_19.py"]
        files.update(
            {
                "tools/run.py": "now inside a folder\n",
                "plugins": "a file where a folder was\n",
                "codemate/added.py": "added\n",
                "data/model.bin": os.urandom(BIG),
            }
        )
    return files


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kill") / "releases"
    versions = {version: release_files(version) for version in ("1.0.0", "1.1.0")}
    return publish_releases(folder, versions)


@pytest.fixture
def home(tmp_path: Path, server: MiddlewareHandle) -> Path:
    """A home with 1.0.0 installed and a user file in the install folder."""
    return install_home(tmp_path / "home", server, "1.0.0", {USER_FILE: "keep me\n"})


def assert_exactly(home: Path, releases: Path, version: str) -> None:
    assert installed_tree(home, (USER_FILE,)) == published_tree(releases, version)
    assert (home / "app" / USER_FILE).read_text() == "keep me\n"
    assert installed_version(home) == version
    listing = json.loads((home / "installed.json").read_text())
    assert listing["version"] == version
    assert sorted(listing["files"]) == sorted(published_tree(releases, version))
    assert not (home / "journal.json").exists()


def killed_update(home: Path, url: str, point: str, *args: str) -> None:
    done = run_cli(
        *args,
        "--home",
        str(home),
        "--middleware-url",
        url,
        env=child_env(**{KILL_VARIABLE: point}),
    )
    assert done.returncode == -signal.SIGKILL, (point, done.stderr)
    json.loads((home / "setup_state.json").read_text())


def recover(home: Path) -> dict:
    done = run_cli("--recover", "--json", "--home", str(home))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["recovery"]


# The update below makes 30 moves: backups 1-14, folder removals 15-17, a new
# folder 18, placed files 19-30.
BEFORE_COMMIT = [
    "apply:after-journal",
    "apply:after-move:1",
    "apply:after-move:6",
    "apply:after-move:12",
    "apply:after-move:14",
    "apply:after-move:15",
    "apply:after-move:18",
    "apply:after-move:24",
    "apply:after-move:30",
    "commit:after-listing",
    "commit:after-version",
    "commit:after-record",
]
AFTER_COMMIT = ["commit:after-mark", "finish:before-journal-removal"]


@pytest.mark.parametrize("point", BEFORE_COMMIT)
def test_kill_before_commit_leaves_old(
    home: Path, releases: Path, server: MiddlewareHandle, point: str
) -> None:
    killed_update(home, server.url, point, "1.1.0")

    recovery = recover(home)

    assert recovery["action"] == "rolled_back"
    assert_exactly(home, releases, "1.0.0")
    state = read_state(home)
    phase = state["phases"]["codebase_update"]
    assert phase["recovery"]["action"] == "rolled_back"
    assert recovery["message"] in phase["warnings"]
    assert state["overall_status"] == "completed"

    done = run_cli("1.1.0", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 0, done.stderr
    assert_exactly(home, releases, "1.1.0")


@pytest.mark.parametrize("point", AFTER_COMMIT)
def test_kill_after_commit_leaves_new(
    home: Path, releases: Path, server: MiddlewareHandle, point: str
) -> None:
    killed_update(home, server.url, point, "1.1.0")

    recovery = recover(home)

    assert recovery["action"] == "completed"
    assert_exactly(home, releases, "1.1.0")
    assert len(list((home / "backups").iterdir())) == 1


def test_next_update_recovers_first(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    killed_update(home, server.url, "apply:after-move:12", "1.1.0")

    done = run_cli(
        "1.1.0", "--json", "--home", str(home), "--middleware-url", server.url
    )

    document = json.loads(done.stdout)
    assert done.returncode == 0
    assert document["recovery"]["action"] == "rolled_back"
    assert document["files_reused"] > 0
    assert_exactly(home, releases, "1.1.0")
    phase = read_state(home)["phases"]["codebase_update"]
    assert phase["recovery"]["action"] == "rolled_back"


def test_kill_during_recovery(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    killed_update(home, server.url, "apply:after-move:18", "1.1.0")
    for undone in ("recover:after-undo:4", "recover:after-undo:9"):
        interrupted = run_cli(
            "--recover",
            "--home",
            str(home),
            env=child_env(**{KILL_VARIABLE: undone}),
        )
        assert interrupted.returncode == -signal.SIGKILL

    recovery = recover(home)

    assert recovery["action"] == "rolled_back"
    assert_exactly(home, releases, "1.0.0")


def test_kill_during_rollback(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    update_in_process(home, server.url, "1.1.0")
    killed = run_cli(
        "--rollback",
        "--home",
        str(home),
        env=child_env(**{KILL_VARIABLE: "apply:after-move:10"}),
    )
    assert killed.returncode == -signal.SIGKILL

    recovery = recover(home)

    assert recovery["kind"] == "rollback"
    assert recovery["action"] == "rolled_back"
    assert_exactly(home, releases, "1.1.0")

    done = run_cli("--rollback", "--home", str(home))

    assert done.returncode == 0, done.stderr
    assert_exactly(home, releases, "1.0.0")


def test_kill_during_download(
    home: Path, releases: Path, server: MiddlewareHandle
) -> None:
    server.set_faults(FaultConfig(bytes_per_second=400_000, path_glob="data/*"))
    child = subprocess.Popen(
        update_command("1.1.0", "--home", str(home), "--middleware-url", server.url),
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_partial_download(home / "staging", min_bytes=200_000)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    assert_exactly(home, releases, "1.0.0")
    server.set_faults(FaultConfig())
    server.requests.clear()

    done = run_cli("1.1.0", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 0, done.stderr
    assert_exactly(home, releases, "1.1.0")
    resumed = [
        r
        for r in server.requests
        if r.path == "/download/v1.1.0/data/model.bin" and r.range_header
    ]
    assert len(resumed) == 1


def wait_for_partial_download(staging: Path, min_bytes: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list(staging.rglob("*.part")) if staging.exists() else []
        if any(part.stat().st_size >= min_bytes for part in parts if part.exists()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no partial download of {min_bytes} bytes in {staging}")
