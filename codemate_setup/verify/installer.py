"""Package installs with pip or uv, in batches so progress moves per package."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from codemate_setup.errors import VerificationError
from codemate_setup.verify.options import Installer
from codemate_setup.verify.process import ProcessResult, run_logged

logger = logging.getLogger(__name__)

# Called with (packages done, packages in total) after each batch.
ProgressCallback = Callable[[int, int], None]
# Called with a sentence when uv failed and pip takes over.
FallbackCallback = Callable[[str], None]


@dataclass(frozen=True)
class InstallSettings:
    """Installer choice and options for package installs.

    Attributes:
        tool: UV or PIP (never AUTO).
        fallback_to_pip: Retry with pip when uv fails (``--installer auto``).
        env_python: The environment's interpreter.
        uv_path: The uv executable when ``tool`` is UV.
        index_url: Package index passed to the installer.
        find_links: Folders or URLs of wheels passed to the installer.
        no_index: Install only from ``find_links``.
        batch_size: Requirements per installer call.
        timeout: Seconds one installer call may take.
    """

    tool: Installer
    fallback_to_pip: bool
    env_python: Path
    uv_path: Path | None
    index_url: str | None
    find_links: tuple[str, ...]
    no_index: bool
    batch_size: int
    timeout: float


@dataclass
class InstallOutcome:
    """Counts of one install run: installer processes and whether pip took over."""

    runs: int = 0
    used_fallback: bool = False


def install_command(
    settings: InstallSettings, tool: Installer, requirements_file: Path
) -> list[str]:
    """Build the installer command for one batch file."""
    if tool is Installer.UV and settings.uv_path is not None:
        command = [
            str(settings.uv_path),
            "pip",
            "install",
            "--python",
            str(settings.env_python),
        ]
    else:
        command = [
            str(settings.env_python),
            "-m",
            "pip",
            "install",
            "--progress-bar",
            "off",
            "--disable-pip-version-check",
            "--no-input",
        ]

    command += ["-r", str(requirements_file)]
    if settings.index_url:
        command += ["--index-url", settings.index_url]
    for location in settings.find_links:
        command += ["--find-links", location]
    if settings.no_index:
        command.append("--no-index")
    return command


def split_batches(lines: Sequence[str], size: int) -> list[list[str]]:
    """Split install lines into consecutive batches of at most ``size``."""
    size = max(1, size)
    return [list(lines[i : i + size]) for i in range(0, len(lines), size)]


def batch_file_text(options: Sequence[str], lines: Sequence[str]) -> str:
    """Return the content of one batch's requirements file."""
    return "".join(f"{line}\n" for line in [*options, *lines])


class PackageInstaller:
    """Runs the installer batch by batch, falling back from uv to pip once.

    Args:
        settings: The installer and its options.
        work_dir: Folder for the temporary batch files; the folder of the
            requirements file, so relative paths keep their meaning.
        cancel: Set to stop between and during installer calls.
        on_progress: Called after each batch.
        on_fallback: Called when uv failed and pip takes over.
    """

    def __init__(
        self,
        settings: InstallSettings,
        work_dir: Path,
        *,
        cancel: threading.Event | None = None,
        on_progress: ProgressCallback | None = None,
        on_fallback: FallbackCallback | None = None,
    ) -> None:
        self.settings = settings
        self.work_dir = work_dir
        self.cancel = cancel
        self.on_progress = on_progress
        self.on_fallback = on_fallback
        self.tool = settings.tool
        self.outcome = InstallOutcome()

    def install(self, lines: Sequence[str], options: Sequence[str]) -> InstallOutcome:
        """Install ``lines`` with the global ``options`` of the requirements file.

        Each batch is resolved on its own, so a later batch may replace a
        dependency version that an earlier one chose. Once every batch has
        run, the environment meets every line.

        Raises:
            VerificationError: If a batch fails; earlier batches stay installed.
            SetupCancelledError: If cancelled.
        """
        total = len(lines)
        done = 0
        self._report(done, total)
        if self.tool is Installer.PIP:
            self._ensure_pip()

        for batch in split_batches(lines, self.settings.batch_size):
            self._install_batch(batch, options)
            done += len(batch)
            self._report(done, total)

        return self.outcome

    def _install_batch(self, batch: list[str], options: Sequence[str]) -> None:
        with _batch_file(self.work_dir, batch_file_text(options, batch)) as path:
            result = self._run(self.tool, path)
            if result.ok:
                return

            if self.tool is Installer.UV and self.settings.fallback_to_pip:
                self._fall_back_to_pip(result)
                result = self._run(Installer.PIP, path)
                if result.ok:
                    return

        names = ", ".join(batch)
        raise VerificationError(
            f"{self.tool.value} failed to install {names}: {result.last_line()}"
        )

    def _fall_back_to_pip(self, failure: ProcessResult) -> None:
        message = f"uv failed ({failure.last_line()}); installing the packages with pip"
        logger.warning(message)
        self.tool = Installer.PIP
        self.outcome.used_fallback = True
        if self.on_fallback is not None:
            self.on_fallback(message)
        self._ensure_pip()

    def _ensure_pip(self) -> None:
        """Bootstrap pip with ``ensurepip`` when the environment has none (uv's)."""
        python = str(self.settings.env_python)
        check = run_logged(
            [python, "-m", "pip", "--version"],
            timeout=self.settings.timeout,
            cancel=self.cancel,
            label="pip --version",
        )
        if check.ok:
            return

        self.outcome.runs += 1
        bootstrap = run_logged(
            [python, "-m", "ensurepip", "--upgrade", "--default-pip"],
            timeout=self.settings.timeout,
            cancel=self.cancel,
            label="ensurepip",
        )
        if not bootstrap.ok:
            env_dir = self.settings.env_python.parent.parent
            raise VerificationError(
                f"the environment has no pip and ensurepip failed: "
                f"{bootstrap.last_line()}; delete {env_dir} and run the "
                "verification again with --installer pip"
            )

    def _run(self, tool: Installer, path: Path) -> ProcessResult:
        self.outcome.runs += 1
        return run_logged(
            install_command(self.settings, tool, path),
            timeout=self.settings.timeout,
            cancel=self.cancel,
            label="uv pip install" if tool is Installer.UV else "pip install",
        )

    def _report(self, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total)


@contextlib.contextmanager
def _batch_file(folder: Path, text: str) -> Iterator[Path]:
    """Write a temporary requirements file in ``folder``; remove it on exit."""
    try:
        fd, name = tempfile.mkstemp(prefix=".requirements-", suffix=".txt", dir=folder)
    except OSError as e:
        raise VerificationError(
            f"cannot write a temporary requirements file in {folder}: {e.strerror}; "
            "check the folder's permissions and free space"
        ) from e
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        logger.debug("batch file %s:\n%s", path, text)
        yield path
    finally:
        path.unlink(missing_ok=True)
