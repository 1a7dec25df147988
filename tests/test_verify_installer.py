"""Tests of batch installs with pip, progress, failures and the uv fallback."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from verify_support import (
    installed_versions,
)

from codemate_setup.errors import VerificationError
from codemate_setup.verify.environment import interpreter_path
from codemate_setup.verify.installer import (
    InstallSettings,
    PackageInstaller,
    batch_file_text,
    install_command,
    split_batches,
)
from codemate_setup.verify.options import Installer

# The last lines uv prints when it cannot build a source distribution.
UV_FAILURE = """\
  x Failed to build `cm-alpha==1.0`
  `-> The build backend returned an error
error: Failed to install requirements"""

# The wheelhouse and shared_env fixtures, shared by every module that uses them.
pytest_plugins = ["verify_fixtures"]


def settings(env_dir: Path, wheelhouse: Path, **changes: object) -> InstallSettings:
    values: dict[str, object] = {
        "tool": Installer.PIP,
        "fallback_to_pip": True,
        "env_python": interpreter_path(env_dir),
        "uv_path": None,
        "index_url": None,
        "find_links": (str(wheelhouse),),
        "no_index": True,
        "batch_size": 10,
        "timeout": 300,
    }
    values.update(changes)
    return InstallSettings(**values)  # type: ignore[arg-type]


def test_pip_command_has_options(tmp_path: Path) -> None:
    config = settings(
        tmp_path, Path("/wheels"), index_url="https://index.invalid/simple"
    )

    command = install_command(config, Installer.PIP, tmp_path / "batch.txt")

    assert command[1:6] == ["-m", "pip", "install", "--progress-bar", "off"]
    assert command[-7:] == [
        "-r",
        str(tmp_path / "batch.txt"),
        "--index-url",
        "https://index.invalid/simple",
        "--find-links",
        "/wheels",
        "--no-index",
    ]


def test_uv_command_targets_environment(tmp_path: Path) -> None:
    config = settings(tmp_path, Path("/wheels"), uv_path=Path("/bin/uv"))

    command = install_command(config, Installer.UV, tmp_path / "batch.txt")

    assert command[:5] == [
        "/bin/uv",
        "pip",
        "install",
        "--python",
        str(interpreter_path(tmp_path)),
    ]


def test_split_batches_keeps_order() -> None:
    assert split_batches(["a", "b", "c"], 2) == [["a", "b"], ["c"]]


def test_batch_file_puts_options_first() -> None:
    assert batch_file_text(["--pre"], ["a==1"]) == "--pre\na==1\n"


@pytest.mark.slow
def test_progress_moves_per_batch(
    shared_env: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    calls: list[tuple[int, int]] = []
    installer = PackageInstaller(
        settings(shared_env, wheelhouse, batch_size=1),
        tmp_path,
        on_progress=lambda done, total: calls.append((done, total)),
    )

    outcome = installer.install(["cm-alpha==1.0", "cm-beta==1.0"], [])

    assert calls == [(0, 2), (1, 2), (2, 2)]
    assert outcome.runs == 2
    assert installed_versions(shared_env)["cm-beta"] == "1.0"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_failed_install_names_package(
    shared_env: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    installer = PackageInstaller(settings(shared_env, wheelhouse), tmp_path)

    with pytest.raises(VerificationError) as caught:
        installer.install(["cm-missing==1.0"], [])

    message = str(caught.value)
    assert message.startswith("pip failed to install cm-missing==1.0: ")
    assert "cm-missing==1.0" in message.split(": ", 1)[1]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as uv")
def test_uv_failure_falls_back_to_pip(
    shared_env: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    fake_uv = tmp_path / "uv"
    fake_uv.write_text(f'#!/bin/sh\ncat >&2 <<"EOF"\n{UV_FAILURE}\nEOF\nexit 2\n')
    fake_uv.chmod(fake_uv.stat().st_mode | stat.S_IXUSR)
    fallbacks: list[str] = []
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    installer = PackageInstaller(
        settings(shared_env, wheelhouse, tool=Installer.UV, uv_path=fake_uv),
        work_dir,
        on_fallback=fallbacks.append,
    )

    outcome = installer.install(["cm-alpha==2.0"], [])

    assert fallbacks == [
        "uv failed (error: Failed to install requirements); installing the "
        "packages with pip"
    ]
    assert outcome.used_fallback is True
    assert installed_versions(shared_env)["cm-alpha"] == "2.0"


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as uv")
def test_uv_failure_without_fallback_fails(
    shared_env: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    fake_uv = tmp_path / "uv"
    fake_uv.write_text(f'#!/bin/sh\ncat >&2 <<"EOF"\n{UV_FAILURE}\nEOF\nexit 2\n')
    fake_uv.chmod(fake_uv.stat().st_mode | stat.S_IXUSR)
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    installer = PackageInstaller(
        settings(
            shared_env,
            wheelhouse,
            tool=Installer.UV,
            uv_path=fake_uv,
            fallback_to_pip=False,
        ),
        work_dir,
    )

    with pytest.raises(VerificationError) as caught:
        installer.install(["cm-alpha==2.0"], [])

    assert str(caught.value) == (
        "uv failed to install cm-alpha==2.0: error: Failed to install requirements"
    )


@pytest.mark.slow
def test_file_options_reach_installer(
    shared_env: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    bare = settings(shared_env, wheelhouse, find_links=(), no_index=False)
    installer = PackageInstaller(bare, tmp_path)

    installer.install(["cm-alpha==1.0"], ["--no-index", f"--find-links {wheelhouse}"])

    assert installed_versions(shared_env)["cm-alpha"] == "1.0"
