"""Tests of the environment manager: diagnosis, tools, creation and rollback."""

from __future__ import annotations

import os
import stat
import sys
import threading
from pathlib import Path

import pytest

from codemate_setup.errors import SetupCancelledError, UsageError, VerificationError
from codemate_setup.verify.environment import (
    EnvironmentFacts,
    EnvironmentState,
    choose_installer,
    create_environment,
    diagnose,
    explain_venv_failure,
    find_uv,
    gather_facts,
    interpreter_path,
    read_pyvenv_cfg,
    replacing_folder,
    venv_command,
)
from codemate_setup.verify.options import Installer
from codemate_setup.verify.probe import parse_probe_output, probe_interpreter

# What Debian's and Ubuntu's python3 -m venv prints without python3-venv.
DEBIAN_VENV_MESSAGE = """\
The virtual environment was not created successfully because ensurepip is not
available.  On Debian/Ubuntu systems, you need to install the python3-venv
package using the following command.

    apt install python3.11-venv

You may need to use sudo with that command.  After installing the python3-venv
package, recreate your virtual environment.

Failing command: {env}/bin/python3
"""

posix_only = pytest.mark.skipif(os.name != "posix", reason="uses shell scripts")


def facts(**changes: object) -> EnvironmentFacts:
    values = {
        "exists": True,
        "empty": False,
        "has_config": True,
        "interpreter_exists": True,
        "base_home": "/usr/bin",
        "base_home_exists": True,
    }
    values.update(changes)
    return EnvironmentFacts(**values)


@pytest.mark.parametrize(
    ("changes", "state", "reason"),
    [
        ({}, EnvironmentState.PRESENT, "the interpreter exists"),
        ({"exists": False}, EnvironmentState.MISSING, "no environment yet"),
        ({"empty": True}, EnvironmentState.MISSING, "no environment yet"),
        ({"has_config": False}, EnvironmentState.BROKEN, "no pyvenv.cfg"),
        ({"base_home_exists": False}, EnvironmentState.BROKEN, "no longer exists"),
        (
            {"interpreter_exists": False},
            EnvironmentState.BROKEN,
            "interpreter is missing",
        ),
    ],
    ids=["healthy", "absent", "empty", "not-a-venv", "base-gone", "interpreter-gone"],
)
def test_diagnose_states(changes: dict, state: EnvironmentState, reason: str) -> None:
    diagnosis = diagnose(facts(**changes))

    assert diagnosis.state is state
    assert reason in diagnosis.reason


def make_fake_venv(env_dir: Path, home: Path) -> None:
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "pyvenv.cfg").write_text(f"home = {home}\nversion = 3.11.7\n")


@posix_only
def test_gather_facts_sees_dangling_interpreter(tmp_path: Path) -> None:
    env_dir = tmp_path / "environment"
    make_fake_venv(env_dir, tmp_path)
    os.symlink(tmp_path / "deleted-python", interpreter_path(env_dir))

    found = gather_facts(env_dir)

    assert found.has_config is True
    assert found.interpreter_exists is False
    assert diagnose(found).state is EnvironmentState.BROKEN


def test_gather_facts_sees_missing_base_python(tmp_path: Path) -> None:
    env_dir = tmp_path / "environment"
    make_fake_venv(env_dir, tmp_path / "uninstalled-python")

    found = gather_facts(env_dir)

    assert found.base_home == str(tmp_path / "uninstalled-python")
    assert found.base_home_exists is False


def test_read_pyvenv_cfg_keys_are_lower_case(tmp_path: Path) -> None:
    (tmp_path / "pyvenv.cfg").write_text("Home = /opt/py\nversion_info=3.12.1\n")

    assert read_pyvenv_cfg(tmp_path) == {"home": "/opt/py", "version_info": "3.12.1"}


def test_interpreter_path_windows_layout(tmp_path: Path) -> None:
    assert (
        interpreter_path(tmp_path, windows=True) == tmp_path / "Scripts" / "python.exe"
    )


@pytest.mark.parametrize(
    ("requested", "uv", "chosen"),
    [
        (Installer.AUTO, Path("/opt/uv"), Installer.UV),
        (Installer.AUTO, None, Installer.PIP),
        (Installer.PIP, Path("/opt/uv"), Installer.PIP),
        (Installer.UV, Path("/opt/uv"), Installer.UV),
    ],
    ids=["auto-with-uv", "auto-without-uv", "pip", "uv"],
)
def test_choose_installer(
    requested: Installer, uv: Path | None, chosen: Installer
) -> None:
    assert choose_installer(requested, uv) is chosen


def test_choose_installer_uv_missing_is_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        choose_installer(Installer.UV, None)

    assert str(caught.value) == (
        "invalid --installer uv: uv was not found on PATH; install uv or use "
        "--installer pip"
    )
    assert caught.value.exit_code == 2


def test_find_uv_explicit_missing_path(tmp_path: Path) -> None:
    assert find_uv(tmp_path / "uv") is None


def test_venv_command_per_tool(tmp_path: Path) -> None:
    python = Path("/usr/bin/python3")

    assert venv_command(Installer.PIP, python, tmp_path, None) == [
        str(python),
        "-m",
        "venv",
        str(tmp_path),
    ]
    assert venv_command(Installer.UV, python, tmp_path, Path("/bin/uv"))[:4] == [
        "/bin/uv",
        "venv",
        "--python",
        str(python),
    ]


def test_explain_debian_venv_failure_names_package() -> None:
    hint = explain_venv_failure(DEBIAN_VENV_MESSAGE.format(env="/h/env"), "3.11.7")

    assert "install the python3.11-venv package" in hint
    assert "sudo apt install python3.11-venv" in hint


def test_explain_other_venv_failure_points_to_log() -> None:
    hint = explain_venv_failure("Error: [Errno 28] No space left on device", "3.12.0")

    assert hint is None


def test_replacing_folder_restores_on_error(tmp_path: Path) -> None:
    folder = tmp_path / "environment"
    folder.mkdir()
    (folder / "keep.txt").write_text("old")

    with pytest.raises(RuntimeError), replacing_folder(folder):
        folder.mkdir()
        (folder / "half-built").write_text("new")
        raise RuntimeError("creation failed")

    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["environment"]


def test_replacing_folder_deletes_old_on_success(tmp_path: Path) -> None:
    folder = tmp_path / "environment"
    folder.mkdir()
    (folder / "old.txt").write_text("old")

    with replacing_folder(folder) as aside:
        assert aside is not None
        folder.mkdir()
        (folder / "new.txt").write_text("new")

    assert sorted(p.name for p in folder.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["environment"]


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@posix_only
def test_create_without_venv_module_names_package(tmp_path: Path) -> None:
    message = DEBIAN_VENV_MESSAGE.format(env=tmp_path / "environment")
    fake_python = write_script(
        tmp_path / "python3",
        f'mkdir -p "$3/bin"\ncat <<"EOF"\n{message}EOF\nexit 1\n',
    )
    env_dir = tmp_path / "environment"
    env_dir.mkdir()
    (env_dir / "previous.txt").write_text("broken but kept")

    with pytest.raises(VerificationError) as caught:
        create_environment(
            env_dir,
            tool=Installer.PIP,
            base_python=fake_python,
            python_version="3.11.7",
            uv_path=None,
            timeout=30,
            cancel=None,
        )

    assert str(caught.value) == (
        f"python -m venv failed to create {env_dir}: this Python lacks the venv or "
        "ensurepip module; on Debian or Ubuntu install the python3.11-venv package "
        "(sudo apt install python3.11-venv), or pass another Python with --python PATH"
    )
    assert [p.name for p in env_dir.iterdir()] == ["previous.txt"]


@posix_only
def test_create_cancelled_removes_half_built(tmp_path: Path) -> None:
    fake_python = write_script(
        tmp_path / "python3", 'mkdir -p "$3/bin"\nexec sleep 30\n'
    )
    env_dir = tmp_path / "environment"
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()

    with pytest.raises(SetupCancelledError):
        create_environment(
            env_dir,
            tool=Installer.PIP,
            base_python=fake_python,
            python_version="3.11.7",
            uv_path=None,
            timeout=60,
            cancel=cancel,
        )

    assert not env_dir.exists()


def test_probe_reports_running_interpreter() -> None:
    probe = probe_interpreter(Path(sys.executable), timeout=60)

    assert probe.python == ".".join(map(str, sys.version_info[:3]))
    assert probe.markers["sys_platform"] == sys.platform
    assert "pytest" in probe.distributions


def test_probe_of_missing_interpreter_fails(tmp_path: Path) -> None:
    with pytest.raises(VerificationError) as caught:
        probe_interpreter(tmp_path / "python", timeout=10)

    assert str(caught.value).startswith(
        f"the interpreter {tmp_path / 'python'} cannot run"
    )


@posix_only
def test_probe_of_failing_interpreter_names_error(tmp_path: Path) -> None:
    fake = write_script(
        tmp_path / "python", 'echo "libpython3.11.so: not found" >&2\nexit 127\n'
    )

    with pytest.raises(VerificationError) as caught:
        probe_interpreter(fake, timeout=10)

    assert str(caught.value) == (
        f"the interpreter {fake} failed: libpython3.11.so: not found"
    )


def test_parse_probe_output_keeps_first_distribution() -> None:
    output = (
        '{"python": "3.11.7", "executable": "x", "prefix": "p", "base_prefix": "b",'
        ' "markers": {"python_version": "3.11"}, "distributions": ['
        '["CM_Alpha", "2.0", [], null], ["cm-alpha", "1.0", [], null], ["bad"]]}'
    )

    probe = parse_probe_output(output)

    assert list(probe.distributions) == ["cm-alpha"]
    assert probe.distributions["cm-alpha"].version == "2.0"


def test_parse_probe_output_rejects_other_json() -> None:
    with pytest.raises(ValueError):
        parse_probe_output("[1, 2]")
