"""State shared by the verification steps during one run."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from packaging.version import Version

from codemate_setup.errors import SetupCancelledError
from codemate_setup.verify.appfiles import InstalledListing
from codemate_setup.verify.model import CheckResult, CheckStatus, VerificationReport
from codemate_setup.verify.options import Installer, VerifyOptions
from codemate_setup.verify.probe import InterpreterProbe
from codemate_setup.verify.requirements import RequirementsSet

logger = logging.getLogger(__name__)

PHASE = "environment_verification"


class ProgressSink(Protocol):
    """The part of ``SetupTracker`` that the verification reports through."""

    def start_setup(self, target_version: str | None = None) -> str: ...

    def finish_setup(self, status: Any, error_details: str | None = None) -> None: ...

    def start_phase(
        self,
        phase: Any,
        steps_total: int | None = None,
        first_step: str | None = None,
    ) -> None: ...

    def complete_phase(self, phase: Any, *, defer: bool = False) -> None: ...

    def fail_phase(self, phase: Any, message: str) -> None: ...

    def skip_phase(self, phase: Any, reason: str) -> None: ...

    def begin_step(self, phase: Any, description: str) -> None: ...

    def complete_step(
        self, phase: Any, description: str, *, defer: bool = False
    ) -> None: ...

    def set_step_progress(
        self, phase: Any, fraction: float, detail: dict[str, Any] | None = None
    ) -> None: ...

    def add_warning(self, phase: Any, message: str) -> None: ...

    def record_fallback(self, phase: Any, message: str) -> None: ...

    def set_phase_info(
        self, phase: Any, key: str, value: Any, *, defer: bool = False
    ) -> None: ...


class NullSink:
    """A sink that records nothing, for runs that must not write the state file."""

    def start_setup(self, target_version: str | None = None) -> str:
        return ""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@dataclass
class VerifyContext:
    """State passed from one step to the next.

    Attributes:
        options: The run's options.
        sink: Where progress, warnings and fallbacks go.
        cancel: Set to stop the run between and during steps.
        report: The checks so far.
        installed_version: From ``version.txt``; None when nothing is installed
            or the file is invalid.
        listing: The installed listing, when it exists and is valid.
        base_python: The interpreter that creates the environment.
        base_version: Its version.
        tool: The installer chosen for this run.
        uv_path: The uv executable, if found.
        env_probe: The environment's interpreter, once known to run; its
            distributions are read by the packages step.
        repair_probe: In a check-only run without a usable environment, the
            base interpreter's markers with no packages, to plan the repair.
        requirements: The parsed requirements, once fetched.
        requirements_dir: Folder that relative paths in them refer to.
    """

    options: VerifyOptions
    sink: ProgressSink
    cancel: threading.Event | None
    report: VerificationReport
    base_python: Path
    base_version: str
    tool: Installer
    uv_path: Path | None
    ports: dict[str, int] = field(default_factory=dict)
    installed_version: Version | None = None
    listing: InstalledListing | None = None
    env_probe: InterpreterProbe | None = None
    repair_probe: InterpreterProbe | None = None
    requirements: RequirementsSet | None = None
    requirements_dir: Path | None = None

    def add(self, *results: CheckResult) -> None:
        """Add results to the report; warnings also go to the state file."""
        for result in results:
            self.report.add(result)
            logger.debug(
                "check %s %s: %s", result.check, result.status.value, result.value
            )
            if result.status is CheckStatus.WARN:
                self.sink.add_warning(PHASE, result.message())

    def check_cancelled(self) -> None:
        """Raise if the run was cancelled.

        Raises:
            SetupCancelledError: If ``cancel`` is set.
        """
        if self.cancel is not None and self.cancel.is_set():
            raise SetupCancelledError("environment verification cancelled")
