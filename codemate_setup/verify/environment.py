"""The application's virtual environment: find it, judge it, create or rebuild it."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from codemate_setup.errors import UsageError, VerificationError
from codemate_setup.verify.options import Installer
from codemate_setup.verify.process import run_logged

logger = logging.getLogger(__name__)

PYVENV_CFG = "pyvenv.cfg"


class EnvironmentState(str, Enum):
    """State of an environment folder: usable, absent or broken."""

    PRESENT = "present"
    MISSING = "missing"
    BROKEN = "broken"


@dataclass(frozen=True)
class EnvironmentFacts:
    """Facts about an environment folder, gathered without running it.

    Attributes:
        exists: The folder exists.
        empty: The folder has no entries.
        has_config: ``pyvenv.cfg`` exists.
        interpreter_exists: The interpreter exists; a symbolic link counts
            only when its target exists.
        base_home: The ``home`` entry of ``pyvenv.cfg``: the folder of the
            Python the environment was created from.
        base_home_exists: That folder still exists.
    """

    exists: bool
    empty: bool
    has_config: bool
    interpreter_exists: bool
    base_home: str | None
    base_home_exists: bool


@dataclass(frozen=True)
class Diagnosis:
    """The state of an environment and the reason for it."""

    state: EnvironmentState
    reason: str


def interpreter_path(env_dir: Path, windows: bool | None = None) -> Path:
    """Return the path of an environment's interpreter.

    Args:
        env_dir: The environment folder.
        windows: Use the Windows layout (``Scripts\\python.exe``); by default
            the layout of the running system.
    """
    if windows is None:
        windows = os.name == "nt"
    if windows:
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def read_pyvenv_cfg(env_dir: Path) -> dict[str, str] | None:
    """Read the ``key = value`` lines of ``pyvenv.cfg``; None if it is unreadable."""
    try:
        text = (env_dir / PYVENV_CFG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None

    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return values


def gather_facts(env_dir: Path) -> EnvironmentFacts:
    """Look at an environment folder without running anything in it."""
    exists = env_dir.is_dir()
    empty = exists and not any(env_dir.iterdir())
    config = read_pyvenv_cfg(env_dir) if exists else None
    base_home = config.get("home") if config else None

    return EnvironmentFacts(
        exists=exists,
        empty=empty,
        has_config=config is not None,
        interpreter_exists=interpreter_path(env_dir).exists(),
        base_home=base_home,
        base_home_exists=bool(base_home) and Path(base_home).is_dir(),
    )


def diagnose(facts: EnvironmentFacts) -> Diagnosis:
    """Decide from the folder alone whether the environment is usable.

    A PRESENT result still has to prove that its interpreter runs.
    """
    if not facts.exists or facts.empty:
        return Diagnosis(EnvironmentState.MISSING, "no environment yet")

    if not facts.has_config:
        return Diagnosis(
            EnvironmentState.BROKEN, f"the folder has no {PYVENV_CFG}, so it is no venv"
        )

    if facts.base_home and not facts.base_home_exists:
        return Diagnosis(
            EnvironmentState.BROKEN,
            f"the Python it was created from no longer exists ({facts.base_home})",
        )

    if not facts.interpreter_exists:
        return Diagnosis(EnvironmentState.BROKEN, "its interpreter is missing")

    return Diagnosis(EnvironmentState.PRESENT, "the interpreter exists")


def find_uv(explicit: Path | None = None) -> Path | None:
    """Find the ``uv`` executable: the given path, ``PATH``, or beside Python.

    The last place covers a ``uv`` installed with pip into the toolkit's own
    environment, which is not on ``PATH`` unless that environment is active.
    """
    if explicit is not None:
        return explicit if explicit.exists() else None

    found = shutil.which("uv")
    if found:
        return Path(found)

    name = "uv.exe" if os.name == "nt" else "uv"
    beside = Path(sys.executable).parent / name
    return beside if beside.exists() else None


def choose_installer(requested: Installer, uv_path: Path | None) -> Installer:
    """Resolve ``--installer auto`` to uv when uv is present, else pip.

    Raises:
        UsageError: If uv is requested but not found.
    """
    if requested is Installer.PIP:
        return Installer.PIP

    if uv_path is not None:
        return Installer.UV

    if requested is Installer.UV:
        raise UsageError(
            "invalid --installer uv: uv was not found on PATH; install uv or use "
            "--installer pip"
        )
    return Installer.PIP


def venv_command(
    tool: Installer, base_python: Path, env_dir: Path, uv_path: Path | None
) -> list[str]:
    """Build the command that creates an environment with uv or ``venv``."""
    if tool is Installer.UV and uv_path is not None:
        return [str(uv_path), "venv", "--python", str(base_python), str(env_dir)]
    return [str(base_python), "-m", "venv", str(env_dir)]


def explain_venv_failure(output: str, python_version: str | None) -> str | None:
    """Explain a failed ``python -m venv`` that lacks its modules; else None.

    Debian and Ubuntu ship ``venv`` and ``ensurepip`` in a separate package
    (``python3-venv``, or ``python3.X-venv`` for a given version); without it
    ``venv`` fails with "ensurepip is not available".
    """
    lowered = " ".join(output.lower().split())
    lacks_module = (
        "ensurepip is not available" in lowered
        or "no module named ensurepip" in lowered
        or "no module named venv" in lowered
    )
    if not lacks_module:
        return None

    package = "python3-venv"
    if python_version:
        major_minor = ".".join(python_version.split(".")[:2])
        package = f"python{major_minor}-venv"
    return (
        "this Python lacks the venv or ensurepip module; on Debian or Ubuntu "
        f"install the {package} package (sudo apt install {package}), or pass "
        "another Python with --python PATH"
    )


@contextlib.contextmanager
def replacing_folder(folder: Path) -> Iterator[Path | None]:
    """Move a folder aside while a new one is built in its place.

    On success the old folder is deleted. On any exception, or an interrupt,
    the half-built folder is deleted and the old one is moved back, so a
    failed rebuild loses nothing.

    Yields:
        Where the old folder was moved, or None when there was none.
    """
    aside: Path | None = None
    if folder.exists() or folder.is_symlink():
        aside = folder.with_name(f".{folder.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(folder, aside)
        logger.debug("moved %s aside to %s", folder, aside)

    try:
        yield aside
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        if aside is not None:
            os.replace(aside, folder)
            logger.debug("restored %s after a failed rebuild", folder)
        raise

    if aside is not None:
        # Renamed first, so that a run killed while it deletes leaves trash,
        # which the next run deletes, and not an aside, which it would restore.
        moved_at = aside.name.rpartition(".old-")[2]
        trash = aside.with_name(f".{folder.name}.trash-{moved_at}")
        os.replace(aside, trash)
        shutil.rmtree(trash, ignore_errors=True)


def create_environment(
    env_dir: Path,
    *,
    tool: Installer,
    base_python: Path,
    python_version: str | None,
    uv_path: Path | None,
    timeout: float,
    cancel: threading.Event | None,
) -> None:
    """Create (or rebuild) the environment with uv or ``python -m venv``.

    Whatever was at ``env_dir`` is moved aside first and restored if the
    creation fails.

    Args:
        env_dir: The environment folder.
        tool: UV to use ``uv venv``, else ``python -m venv``.
        base_python: The interpreter the environment is created from.
        python_version: Its version, for the hint when ``venv`` is missing.
        uv_path: The uv executable when ``tool`` is UV.
        timeout: Seconds the creation may take.
        cancel: Set to stop the creation early.

    Raises:
        VerificationError: If the tool fails; the message names the next action.
        SetupCancelledError: If ``cancel`` was set.
    """
    command = venv_command(tool, base_python, env_dir, uv_path)
    label = "uv venv" if tool is Installer.UV else "python -m venv"
    env_dir.parent.mkdir(parents=True, exist_ok=True)

    with replacing_folder(env_dir):
        result = run_logged(command, timeout=timeout, cancel=cancel, label=label)
        if not result.ok:
            output = "\n".join(result.output_tail)
            reason = explain_venv_failure(output, python_version) or (
                f"{result.last_line()}; the log file has the full output"
            )
            raise VerificationError(f"{label} failed to create {env_dir}: {reason}")

        if not interpreter_path(env_dir).exists():
            raise VerificationError(
                f"{label} finished but {interpreter_path(env_dir)} does not exist"
            )

    logger.info("created the environment %s with %s", env_dir, label)
