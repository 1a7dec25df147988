"""Command-line misuse: invalid settings exit 2 before anything is written."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from orchestration import ROOT, child_env, run_setup
from update_helpers import child_env as update_env
from update_helpers import run_cli

from codemate_setup.state import SetupTracker


def test_update_bad_updater_port_names_variable(tmp_path: Path) -> None:
    home = tmp_path / "home"

    result = run_cli(
        "1.1.0", "--home", str(home), env=update_env(UPDATER_SERVER_PORT="abc")
    )

    assert result.returncode == 2
    assert "invalid UPDATER_SERVER_PORT 'abc'" in result.stderr
    assert "Traceback" not in result.stderr


def test_orchestrator_bad_updater_port_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    command = [sys.executable, str(ROOT / "setup_orchestrator.py"), "1.1.0"]

    result = subprocess.run(
        [*command, "--home", str(home), "--yes"],
        capture_output=True,
        text=True,
        env=child_env(UPDATER_SERVER_PORT="99999"),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 2
    assert "invalid UPDATER_SERVER_PORT '99999'" in result.stderr
    assert not (home / "setup_state.json").exists()


def test_orchestrator_bad_service_port_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, middleware
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HTTP_SERVER_PORT", "99999")

    result = run_setup("2.9.0", middleware.url, home)

    assert result.returncode == 2
    assert "invalid HTTP_SERVER_PORT '99999'" in result.stderr
    assert not (home / "version.txt").exists()
    assert not (home / "setup_state.json").exists()


def test_orchestrator_skip_verification_ignores_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, middleware
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HTTP_SERVER_PORT", "99999")

    result = run_setup("2.9.0", middleware.url, home, "--skip-verification")

    assert result.returncode == 0, result.stderr
    assert (home / "version.txt").read_text().strip() == "2.9.0"


def test_verification_non_ascii_digit_port_rejected(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "verification_env.py"), "--check-only"]

    result = subprocess.run(
        [*command, "--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        env=child_env(QDRANT_PORT="\u00b2"),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 2
    assert "invalid QDRANT_PORT" in result.stderr
    assert "Traceback" not in result.stderr


HOME_SCRIPTS = [
    ("update.py", "3.0.0", "--yes"),
    ("verification_env.py", "--check-only"),
    ("setup_orchestrator.py", "3.0.0", "--yes"),
]


def run_script_with_home(script: tuple[str, ...], home: Path):
    return subprocess.run(
        [sys.executable, str(ROOT / script[0]), *script[1:], "--home", str(home)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("script", HOME_SCRIPTS, ids=lambda s: s[0])
def test_home_that_is_a_file_is_invalid_usage(
    tmp_path: Path, script: tuple[str, ...]
) -> None:
    home = tmp_path / "home"
    home.write_text("notes\n")

    result = run_script_with_home(script, home)

    assert result.returncode == 2
    assert f"invalid home {home}: it exists and is not a folder" in result.stderr
    assert "cannot write a log file" not in result.stderr
    assert home.read_text() == "notes\n"


@pytest.mark.parametrize("script", HOME_SCRIPTS, ids=lambda s: s[0])
def test_home_below_a_file_names_the_file(
    tmp_path: Path, script: tuple[str, ...]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("notes\n")

    result = run_script_with_home(script, blocker / "home")

    assert result.returncode == 2
    assert f"{blocker} exists and is not a folder" in result.stderr
    assert blocker.read_text() == "notes\n"


INTERRUPTING_MODULE = """\
import os
import signal
import time

os.kill(os.getpid(), signal.SIGINT)
time.sleep(30)
"""


@pytest.mark.parametrize(
    "script",
    [*HOME_SCRIPTS, ("setup_tracker.py",)],
    ids=lambda s: s[0],
)
def test_ctrl_c_while_loading_exits_130_quietly(
    tmp_path: Path, script: tuple[str, ...]
) -> None:
    # A module that every script loads (psutil) is replaced by one that sends
    # SIGINT to its own process while it is being imported.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "psutil.py").write_text(INTERRUPTING_MODULE)
    home = tmp_path / "home"
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(shim), env["PYTHONPATH"]])

    result = subprocess.run(
        [sys.executable, str(ROOT / script[0]), *script[1:], "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 130
    assert result.stderr == (
        "error: interrupted by the user while starting; nothing was changed\n"
    )
    assert not home.exists()


@pytest.mark.parametrize("script", HOME_SCRIPTS, ids=lambda s: s[0])
def test_home_dangling_symlink_names_target(
    tmp_path: Path, script: tuple[str, ...]
) -> None:
    home = tmp_path / "home"
    home.symlink_to(tmp_path / "missing")

    result = run_script_with_home(script, home)

    assert result.returncode == 2
    assert (
        f"invalid home {home}: it is a symbolic link to {tmp_path / 'missing'}, "
        "which does not exist"
    ) in result.stderr
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("script", HOME_SCRIPTS, ids=lambda s: s[0])
def test_home_symlink_to_folder_is_accepted(
    tmp_path: Path, script: tuple[str, ...]
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    home = tmp_path / "home"
    home.symlink_to(target)

    result = run_script_with_home(script, home)

    assert "invalid home" not in result.stderr


def test_ctrl_c_ignored_by_parent_stays_ignored(tmp_path: Path) -> None:
    # A background job inherits an ignored SIGINT; loading must not undo that.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "psutil.py").write_text(
        INTERRUPTING_MODULE.replace("time.sleep(30)", "time.sleep(0.2)")
    )
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(shim), env["PYTHONPATH"]])

    result = subprocess.run(
        [sys.executable, str(ROOT / "update.py"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )

    assert result.returncode == 0
    assert "usage: update.py" in result.stdout


@pytest.mark.parametrize("flag", ["--list", "--check", "--list-backups", "--recover"])
def test_update_action_with_version_names_flag(tmp_path: Path, flag: str) -> None:
    result = run_cli("3.0.0", flag, "--home", str(tmp_path / "home"))

    assert result.returncode == 2
    assert f"{flag} takes no VERSION, got '3.0.0'" in result.stderr
    assert f"run update.py {flag} alone" in result.stderr


def test_wait_timeout_keeps_json_stdout(tmp_path: Path) -> None:
    tracker = SetupTracker(tmp_path / "setup_state.json")
    setup_id = tracker.start_setup("3.0.0")
    command = [sys.executable, str(ROOT / "setup_orchestrator.py"), "--wait"]

    try:
        result = subprocess.run(
            [*command, "--timeout", "0.5", "--json", "--home", str(tmp_path)],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
    finally:
        tracker.close()

    assert result.returncode == 1
    assert json.loads(result.stdout)["state"]["setup_id"] == setup_id
    assert f"timed out after 0.5 s: setup {setup_id} is still running" in (
        result.stderr
    )
    assert "wait again with a longer --timeout" in result.stderr


def test_wait_interrupted_says_setup_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    spec = importlib.util.spec_from_file_location(
        "setup_orchestrator", ROOT / "setup_orchestrator.py"
    )
    assert spec is not None and spec.loader is not None
    orchestrator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(orchestrator)

    def interrupted_wait(*_args: object, **_kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(orchestrator, "wait_for_setup", interrupted_wait)

    exit_code = orchestrator.main(["--wait", "--home", str(tmp_path)])

    assert exit_code == 130
    assert "interrupted while reading the setup" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_wait_rejects_invalid_timeout(tmp_path: Path, value: str) -> None:
    command = [sys.executable, str(ROOT / "setup_orchestrator.py"), "--wait"]

    result = subprocess.run(
        [*command, "--timeout", value, "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )

    assert result.returncode == 2
    assert f"invalid --timeout {float(value):g}" in result.stderr
