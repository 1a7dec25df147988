"""update.py against the reference middleware: install, update, legacy, rollback."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_tree
from update_helpers import (
    child_env,
    folder_set,
    installed_tree,
    installed_version,
    publish,
    publish_releases,
    published_tree,
    read_state,
    run_cli,
    tree_snapshot,
    update_command,
    update_in_process,
)

from codemate_setup.backups import list_backups
from codemate_setup.config import HomeLayout, RunOptions
from codemate_setup.middleware import MiddlewareHandle
from codemate_setup.publish import publish_release
from codemate_setup.rollback import run_rollback
from codemate_setup.state import SetupTracker
from codemate_setup.updater import UPDATE_STEPS

RELEASES: dict[str, dict[str, bytes | str]] = {
    "1.0.0": {
        "initiate.py": "print('1.0.0')\n",
        "codemate/__init__.py": "",
        "codemate/core.py": "VERSION = '1.0.0'\n",
        "codemate/old.py": "old = True\n",
        "tools": "a file that becomes a folder\n",
        "bin/run.sh": "#!/bin/sh\necho run\n",
        "docs/guide/ünïcode.md": "# guide\n",
        "assets/logo.bin": bytes(range(256)) * 4,
        "requirements.txt": "# no packages\n",
    },
    "1.1.0": {
        "initiate.py": "print('1.1.0')\n",
        "codemate/__init__.py": "",
        "codemate/core.py": "VERSION = '1.1.0'\n",
        "codemate/new.py": "new = True\n",
        "tools/a.py": "inside the new folder\n",
        "bin/run.sh": "#!/bin/sh\necho run\n",
        "docs/guide/ünïcode.md": "# guide, edited\n",
        "assets/logo.bin": bytes(range(256)) * 4,
        "requirements.txt": "# no packages\n",
    },
    "1.2.0": {
        "initiate.py": "print('1.2.0')\n",
        "codemate/__init__.py": "",
        "codemate/core.py": "VERSION = '1.2.0'\n",
        "codemate/new.py": "new = True\n",
        "tools/a.py": "inside the new folder\n",
        "bin/run.sh": "#!/bin/sh\necho run\n",
        "docs": "the docs folder became a file\n",
        "assets/logo.bin": bytes(range(255, -1, -1)) * 4,
        "requirements.txt": "requests>=2.31\n",
    },
}
MODES = {
    "1.0.0": {"bin/run.sh": 0o755},
    "1.1.0": {"bin/run.sh": 0o700},
    "1.2.0": {"bin/run.sh": 0o755},
}
USER_FILES = {
    ".env": "TOKEN=secret\n",
    "notes/todo.txt": "mine\n",
    "codemate/local_settings.py": "DEBUG = True\n",
}


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    return publish_releases(tmp_path / "releases", RELEASES, MODES)


@pytest.fixture
def legacy_server(
    releases: Path, start_middleware: Callable[..., MiddlewareHandle]
) -> MiddlewareHandle:
    return start_middleware(releases, legacy=True)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def assert_installed(
    home: Path, releases: Path, version: str, *, modes: bool = True
) -> None:
    installed = installed_tree(home, tuple(USER_FILES))
    expected = published_tree(releases, version)
    if not modes:
        installed = {path: data for path, (data, _mode) in installed.items()}
        expected = {path: data for path, (data, _mode) in expected.items()}
    assert installed == expected
    assert installed_version(home) == version
    listing = json.loads((home / "installed.json").read_text())
    assert listing["version"] == version
    assert sorted(listing["files"]) == sorted(published_tree(releases, version))


def downloads(handle: MiddlewareHandle) -> list[str]:
    return [r.path for r in handle.requests if r.path.startswith("/download/")]


def test_update_fresh_install(home: Path, releases: Path, server: MiddlewareHandle):
    result = update_in_process(home, server.url, "1.0.0")

    assert result.action == "installed"
    assert_installed(home, releases, "1.0.0")
    assert (home / "requirements.txt").read_text() == "# no packages\n"
    assert list_backups(home / "backups") == []


def test_update_fresh_install_state(home: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.0.0")

    state = read_state(home)
    phase = state["phases"]["codebase_update"]
    assert state["overall_status"] == "completed"
    assert state["overall_progress"] == 100
    assert state["target_version"] == "1.0.0"
    assert phase["status"] == "completed"
    assert phase["steps_completed"] == list(UPDATE_STEPS)
    assert phase["steps_total"] == 10
    assert state["phases"]["environment_verification"]["status"] == "skipped"


def test_update_next_release(home: Path, releases: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.0.0")

    result = update_in_process(home, server.url, "1.1.0")

    assert result.action == "updated"
    assert result.from_version == "1.0.0"
    assert result.files_removed == 2
    assert_installed(home, releases, "1.1.0")
    assert folder_set(home / "app") == folder_set(releases / "1.1.0" / "files")


def test_update_across_releases(home: Path, releases: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.0.0")

    update_in_process(home, server.url, "1.2.0")

    assert_installed(home, releases, "1.2.0")
    assert (home / "requirements.txt").read_text() == "requests>=2.31\n"
    assert folder_set(home / "app") == folder_set(releases / "1.2.0" / "files")


def test_update_legacy_chain(
    home: Path, releases: Path, legacy_server: MiddlewareHandle
):
    update_in_process(home, legacy_server.url, "1.0.0")
    legacy_server.requests.clear()

    update_in_process(home, legacy_server.url, "1.2.0")

    manifests = [r.path for r in legacy_server.requests if "/manifest/" in r.path]
    assert manifests == ["/manifest/v1.2.0", "/manifest/v1.1.0"]
    # Legacy manifests carry no modes, so only the bytes can match.
    assert_installed(home, releases, "1.2.0", modes=False)


def test_update_legacy_fresh_install(
    home: Path, releases: Path, legacy_server: MiddlewareHandle
):
    update_in_process(home, legacy_server.url, "1.2.0")

    assert_installed(home, releases, "1.2.0", modes=False)


def test_update_legacy_unknown_installed_falls_back(
    home: Path, releases: Path, legacy_server: MiddlewareHandle
):
    update_in_process(home, legacy_server.url, "1.0.0")
    (home / "version.txt").write_text("0.9.0\n")

    result = update_in_process(home, legacy_server.url, "1.1.0")

    assert len(result.fallbacks) == 1
    assert "0.9.0 is not in the middleware's release list" in result.fallbacks[0]
    fallbacks = read_state(home)["phases"]["codebase_update"]["fallbacks"]
    assert fallbacks == result.fallbacks
    assert_installed(home, releases, "1.1.0", modes=False)


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes only")
def test_update_legacy_edit_keeps_mode(
    home: Path, releases: Path, legacy_server: MiddlewareHandle
):
    update_in_process(home, legacy_server.url, "1.0.0")
    core = home / "app" / "codemate" / "core.py"
    core.chmod(0o750)

    update_in_process(home, legacy_server.url, "1.1.0")

    assert core.read_text() == "VERSION = '1.1.0'\n"
    assert core.stat().st_mode & 0o777 == 0o750


def test_update_same_version_noop(home: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.1.0")
    server.requests.clear()

    result = update_in_process(home, server.url, "1.1.0")

    assert result.action == "unchanged"
    assert "already installed" in result.message
    assert result.files_rehashed == 0
    assert downloads(server) == []
    assert read_state(home)["overall_status"] == "completed"


def test_update_same_version_repairs(
    home: Path, releases: Path, server: MiddlewareHandle
):
    update_in_process(home, server.url, "1.1.0")
    (home / "app" / "codemate" / "core.py").write_text("broken by hand\n")
    (home / "app" / "initiate.py").unlink()

    result = update_in_process(home, server.url, "1.1.0")

    assert result.action == "repaired"
    assert sorted(downloads(server)[-2:]) == [
        "/download/v1.1.0/codemate/core.py",
        "/download/v1.1.0/initiate.py",
    ]
    assert_installed(home, releases, "1.1.0")


@pytest.mark.parametrize("enabled", [True, False], ids=["enabled", "disabled"])
def test_update_leaves_garbage_collector_as_found(
    home: Path, server: MiddlewareHandle, enabled: bool
):
    # The comparison pauses the cyclic collector and freezes what it built.
    # The collector must come back as it was, with nothing left frozen.
    if not enabled:
        gc.disable()
    try:
        update_in_process(home, server.url, "1.0.0")
        update_in_process(home, server.url, "1.1.0")

        assert gc.isenabled() is enabled
        assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_update_keeps_objects_the_caller_froze(home: Path, server: MiddlewareHandle):
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        update_in_process(home, server.url, "1.0.0")

        # Not unfrozen, and the update froze nothing more. Some of the frozen
        # objects may have been freed meanwhile.
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


def test_same_version_repairs_file_touched_with_same_size(
    home: Path, releases: Path, server: MiddlewareHandle
):
    # A local edit that keeps the size still moves the mtime, so the file is
    # hashed, found changed and fetched again.
    update_in_process(home, server.url, "1.1.0")
    core = home / "app" / "codemate" / "core.py"
    core.write_bytes(bytes(len(core.read_bytes())))

    result = update_in_process(home, server.url, "1.1.0")

    assert result.action == "repaired"
    assert result.files_rehashed == 1
    assert downloads(server)[-1] == "/download/v1.1.0/codemate/core.py"
    assert_installed(home, releases, "1.1.0")


def test_user_files_survive_everything(
    home: Path, releases: Path, server: MiddlewareHandle
):
    update_in_process(home, server.url, "1.0.0")
    make_tree(home / "app", USER_FILES)
    expected = {p: v for p, v in tree_snapshot(home / "app").items() if p in USER_FILES}
    options = RunOptions(HomeLayout.create(home), middleware_url=server.url)

    update_in_process(home, server.url, "1.2.0")
    rollback(options, None)
    update_in_process(home, server.url, "1.1.0")
    rollback(options, "1.0.0")

    remaining = tree_snapshot(home / "app")
    assert {p: remaining.get(p) for p in USER_FILES} == expected
    assert_installed(home, releases, "1.0.0")


def rollback(options: RunOptions, version: str | None):
    tracker = SetupTracker(options.layout.state_file, durable=False)
    try:
        return run_rollback(options, version, tracker=tracker, own_setup=True)
    finally:
        tracker.close()


def test_rollback_restores_previous(
    home: Path, releases: Path, server: MiddlewareHandle
):
    update_in_process(home, server.url, "1.0.0")
    update_in_process(home, server.url, "1.1.0")
    options = RunOptions(HomeLayout.create(home), middleware_url=server.url)

    result = rollback(options, None)

    assert result.action == "rolled_back"
    assert result.to_version == "1.0.0"
    assert_installed(home, releases, "1.0.0")
    assert (home / "requirements.txt").read_text() == "# no packages\n"


def test_rollback_of_rollback_restores_newer(
    home: Path, releases: Path, server: MiddlewareHandle
):
    update_in_process(home, server.url, "1.0.0")
    update_in_process(home, server.url, "1.1.0")
    options = RunOptions(HomeLayout.create(home), middleware_url=server.url)
    rollback(options, None)

    rollback(options, None)

    assert_installed(home, releases, "1.1.0")


def test_rollback_chain_two_versions(
    home: Path, releases: Path, server: MiddlewareHandle
):
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        update_in_process(home, server.url, version)
    options = RunOptions(HomeLayout.create(home), middleware_url=server.url)
    server.requests.clear()

    rollback(options, "1.0.0")

    assert_installed(home, releases, "1.0.0")
    assert server.requests == []
    state = read_state(home)
    assert state["phases"]["codebase_update"]["status"] == "completed"


def test_rollback_unknown_version_cli(home: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.0.0")
    before = tree_snapshot(home / "app")

    done = run_cli("--rollback", "0.5.0", "--home", str(home))

    assert done.returncode == 2
    assert "no backup leads from 1.0.0 back to 0.5.0" in done.stderr
    assert tree_snapshot(home / "app") == before


def test_rollback_nothing_installed_cli(home: Path):
    done = run_cli("--rollback", "--home", str(home))

    assert done.returncode == 2
    assert "nothing is installed" in done.stderr


def test_downgrade_needs_flag_cli(home: Path, releases: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.1.0")
    before = tree_snapshot(home / "app")

    refused = run_cli("1.0.0", "--home", str(home), "--middleware-url", server.url)

    assert refused.returncode == 2
    assert "1.0.0 is older than the installed 1.1.0" in refused.stderr
    assert "--allow-downgrade" in refused.stderr
    assert tree_snapshot(home / "app") == before

    allowed = run_cli(
        "1.0.0",
        "--allow-downgrade",
        "--home",
        str(home),
        "--middleware-url",
        server.url,
    )

    assert allowed.returncode == 0, allowed.stderr
    assert "Downgraded CodeMate from 1.1.0 to 1.0.0" in allowed.stdout
    assert_installed(home, releases, "1.0.0")


def test_major_update_needs_yes_cli(tmp_path: Path, start_middleware):
    releases = tmp_path / "releases"
    publish(releases, "1.0.0", {"a.py": "1"})
    publish(releases, "2.0.0", {"a.py": "2"})
    server = start_middleware(releases)
    home = tmp_path / "home"
    common = ("--home", str(home), "--middleware-url", server.url)
    assert run_cli("1.0.0", *common).returncode == 0

    refused = run_cli("2.0.0", *common)

    assert refused.returncode == 2
    assert "major update and needs confirmation; pass --yes" in refused.stderr
    assert installed_version(home) == "1.0.0"
    assert read_state(home)["overall_status"] == "failed"

    confirmed = run_cli("2.0.0", "--yes", *common)

    assert confirmed.returncode == 0, confirmed.stderr
    assert installed_version(home) == "2.0.0"


def test_cli_json_result(home: Path, server: MiddlewareHandle):
    done = run_cli(
        "1.0.0", "--json", "--home", str(home), "--middleware-url", server.url
    )

    document = json.loads(done.stdout)
    assert done.returncode == 0
    assert document["status"] == "completed"
    assert document["action"] == "installed"
    assert document["to_version"] == "1.0.0"
    assert document["files_downloaded"] == len(RELEASES["1.0.0"])


def test_cli_json_error(home: Path, server: MiddlewareHandle):
    done = run_cli(
        "7.7.7", "--json", "--home", str(home), "--middleware-url", server.url
    )

    document = json.loads(done.stdout)
    assert done.returncode == 2
    assert document["status"] == "failed"
    assert document["exit_code"] == 2
    assert "release 7.7.7 not found" in document["error"]
    assert "update.py --list" in document["error"]


def test_cli_list_marks_installed(home: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.1.0")

    done = run_cli("--list", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 0
    assert done.stdout.splitlines() == ["  1.0.0", "* 1.1.0", "  1.2.0"]


def test_cli_check_reports_update(home: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.1.0")
    common = ("--home", str(home), "--middleware-url", server.url)

    text = run_cli("--check", *common)
    document = json.loads(run_cli("--check", "--json", *common).stdout)

    assert text.returncode == 0
    assert "An update is available: 1.1.0 -> 1.2.0." in text.stdout
    assert document["update_available"] is True
    assert document["latest"] == "1.2.0"


def test_cli_check_up_to_date(home: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.2.0")

    done = run_cli("--check", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 0
    assert "CodeMate 1.2.0 is up to date" in done.stdout


def test_cli_list_backups(home: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.0.0")
    update_in_process(home, server.url, "1.1.0")

    done = run_cli("--list-backups", "--json", "--home", str(home))

    document = json.loads(done.stdout)
    assert done.returncode == 0
    assert len(document) == 1
    assert document[0]["restores"] == "1.0.0"
    assert document[0]["replaced_by"] == "1.1.0"
    assert document[0]["kind"] == "update"


def test_cli_rollback(home: Path, releases: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.0.0")
    update_in_process(home, server.url, "1.1.0")

    done = run_cli("--rollback", "--home", str(home))

    assert done.returncode == 0, done.stderr
    assert "Rolled back CodeMate from 1.1.0 to 1.0.0" in done.stdout
    assert_installed(home, releases, "1.0.0")


@pytest.mark.parametrize(
    "version", ["../../etc", "", "3.0.0; rm -rf", "v", "1.0.0/../x", "latest"]
)
def test_cli_invalid_version(tmp_path: Path, version: str):
    home = tmp_path / "home"

    done = run_cli(
        version, "--home", str(home), "--middleware-url", "http://127.0.0.1:9"
    )

    assert done.returncode == 2
    assert f"invalid version {version!r}" in done.stderr
    assert "expected a release version such as 3.0.0" in done.stderr
    assert not home.exists()


def test_cli_missing_version(tmp_path: Path):
    done = run_cli("--home", str(tmp_path / "home"))

    assert done.returncode == 2
    assert "missing VERSION" in done.stderr


def test_cli_unknown_version(home: Path, server: MiddlewareHandle):
    done = run_cli("9.9.9", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 2
    assert "release 9.9.9 not found on the middleware" in done.stderr
    assert not (home / "app").exists() or not any((home / "app").iterdir())


def test_cli_busy_home_exit_3(home: Path, server: MiddlewareHandle):
    from codemate_setup.setuplock import hold_setup_lock

    with hold_setup_lock(HomeLayout.create(home)):
        done = run_cli("1.0.0", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 3
    assert "another setup is running" in done.stderr
    assert installed_version(home) is None


def test_cli_reports_into_orchestrator_setup(home: Path, server: MiddlewareHandle):
    tracker = SetupTracker(home / "setup_state.json", durable=False)
    setup_id = tracker.start_setup("1.0.0")
    try:
        done = run_cli(
            "1.0.0",
            "--home",
            str(home),
            "--middleware-url",
            server.url,
            env=child_env(CODEMATE_SETUP_ID=setup_id),
        )
        state = read_state(home)
    finally:
        tracker.finish_setup("completed")
        tracker.close()

    assert done.returncode == 0, done.stderr
    assert state["setup_id"] == setup_id
    assert state["overall_status"] == "running"
    assert state["pid"] == os.getpid()
    assert state["phases"]["codebase_update"]["status"] == "completed"
    assert state["phases"]["environment_verification"]["status"] == "pending"


@pytest.mark.slow
def test_one_file_change_in_large_install(tmp_path: Path, start_middleware):
    files = {f"pkg{i % 20}/module_{i}.py": f"value = {i}\n" for i in range(2000)}
    releases = tmp_path / "releases"
    publish(releases, "1.0.0", files)
    publish(releases, "1.1.0", dict(files, **{"pkg7/module_7.py": "value = 'new'\n"}))
    server = start_middleware(releases)
    home = tmp_path / "home"
    update_in_process(home, server.url, "1.0.0")
    server.requests.clear()

    result = update_in_process(home, server.url, "1.1.0")

    assert downloads(server) == ["/download/v1.1.0/pkg7/module_7.py"]
    assert result.files_downloaded == 1
    assert result.files_placed == 1
    assert result.files_rehashed == 0
    backup = list_backups(home / "backups")[0]
    assert list(backup.stored) == ["pkg7/module_7.py"]
    assert len(list((backup.path / "files").iterdir())) == 1
    assert installed_tree(home) == tree_snapshot(releases / "1.1.0" / "files")


def test_rollback_to_installed_is_noop(home: Path, server: MiddlewareHandle):
    update_in_process(home, server.url, "1.0.0")
    update_in_process(home, server.url, "1.1.0")
    before = tree_snapshot(home / "app")

    done = run_cli("--rollback", "1.1.0", "--home", str(home))

    assert done.returncode == 0, done.stderr
    assert "CodeMate 1.1.0 is already installed; nothing changed" in done.stdout
    assert tree_snapshot(home / "app") == before
    assert len(list_backups(home / "backups")) == 1


@pytest.mark.skipif(os.name == "nt", reason="needs SIGTERM delivery")
def test_sigterm_cancels_update(home: Path, releases: Path, server: MiddlewareHandle):
    import signal
    import subprocess
    import time

    from codemate_setup.middleware import FaultConfig

    update_in_process(home, server.url, "1.0.0")
    server.set_faults(FaultConfig(bytes_per_second=200, path_glob="assets/*"))
    child = subprocess.Popen(
        update_command("1.2.0", "--home", str(home), "--middleware-url", server.url),
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not any(
        r.path.startswith("/download/v1.2.0/assets") for r in server.requests
    ):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)

    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=30)

    assert child.returncode == 130
    assert "cancelled" in stderr
    state = read_state(home)
    assert state["overall_status"] == "cancelled"
    assert state["error_details"].startswith("codebase_update: cancelled")
    assert_installed(home, releases, "1.0.0")


def test_update_without_listing_uses_manifest(
    home: Path, releases: Path, server: MiddlewareHandle
):
    update_in_process(home, server.url, "1.0.0")
    (home / "installed.json").unlink()

    result = update_in_process(home, server.url, "1.1.0")

    assert "installed.json is missing" in result.warnings[0]
    assert result.files_rehashed == len(RELEASES["1.0.0"])
    assert_installed(home, releases, "1.1.0")


# Open files allowed in test_too_few_open_files_cli: enough to start and write
# the state file, too few for the download threads.
FEW_OPEN_FILES = 10


@pytest.mark.skipif(sys.platform != "linux", reason="sets RLIMIT_NOFILE")
def test_too_few_open_files_cli(tmp_path: Path, start_middleware):
    files = {f"m{index}.py": f"print({index})\n".encode() for index in range(6)}
    files |= {"models/a.bin": os.urandom(3 << 20), "models/b.bin": os.urandom(3 << 20)}
    tree = make_tree(tmp_path / "src", files)
    publish_release(tree, "1.0.0", tmp_path / "releases", durable=False)
    server = start_middleware(tmp_path / "releases")
    home = tmp_path / "home"

    def few_open_files() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (FEW_OPEN_FILES, FEW_OPEN_FILES))

    done = subprocess.run(
        update_command(
            "1.0.0", "--middleware-url", server.url, "--home", str(home), "--yes"
        ),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        stdin=subprocess.DEVNULL,
        preexec_fn=few_open_files,
    )

    assert done.returncode == 1
    assert "Too many open files" in done.stderr
    assert "raise the limit of open files (ulimit -n)" in done.stderr
    assert installed_version(home) is None
    assert read_state(home)["overall_status"] == "failed"
