"""Results of the verification checks and the report that collects them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from codemate_setup.errors import ExitCode


class CheckStatus(str, Enum):
    """Outcome of one check, as written in the JSON report."""

    OK = "ok"
    FIXED = "fixed"
    WARN = "warn"
    FAIL = "fail"


# Marks of the terminal report. FAIL is upper case so that it is easy to spot.
MARKS = {
    CheckStatus.OK: "[ok]",
    CheckStatus.FIXED: "[fixed]",
    CheckStatus.WARN: "[warn]",
    CheckStatus.FAIL: "[FAIL]",
}


@dataclass(frozen=True)
class CheckResult:
    """One line of the report.

    Attributes:
        check: Stable identifier, such as ``system.disk`` or ``port.QDRANT_PORT``.
        title: Short name shown to the user, such as ``free disk``.
        status: The outcome. FAIL is critical: it would stop the application.
        value: What was found, with numbers and thresholds.
        action: What the user should do next; None when nothing is needed.
        detail: Structured facts for the JSON report.
    """

    check: str
    title: str
    status: CheckStatus
    value: str
    action: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def is_issue(self) -> bool:
        """True for every status but OK."""
        return self.status is not CheckStatus.OK

    def message(self) -> str:
        """Return the check as one sentence for a warning list or an error."""
        text = f"{self.title}: {self.value}"
        if self.action:
            text += f"; {self.action}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Return the check as a JSON-ready dictionary."""
        return {
            "check": self.check,
            "title": self.title,
            "status": self.status.value,
            "value": self.value,
            "action": self.action,
            "detail": self.detail,
        }


@dataclass
class VerificationReport:
    """Every check of one run, in the order they ran.

    Attributes:
        checks: The results.
        check_only: The run diagnosed without repairing.
        installer_runs: Installer processes started (pip, uv or venv), so a
            caller can see that a run where everything held called none.
        installed_version: The installed version, if any.
    """

    checks: list[CheckResult] = field(default_factory=list)
    check_only: bool = False
    installer_runs: int = 0
    installed_version: str | None = None

    def add(self, *results: CheckResult) -> None:
        """Append results to the report."""
        self.checks.extend(results)

    @property
    def issues_found(self) -> int:
        """Checks that were not OK, fixed ones included."""
        return sum(1 for check in self.checks if check.is_issue)

    @property
    def fixed(self) -> int:
        """Issues that this run repaired."""
        return self._count(CheckStatus.FIXED)

    @property
    def warnings(self) -> int:
        """Issues that remain but do not stop the application."""
        return self._count(CheckStatus.WARN)

    @property
    def critical(self) -> int:
        """Issues that remain and would stop the application."""
        return self._count(CheckStatus.FAIL)

    @property
    def exit_code(self) -> ExitCode:
        """FAILED when a critical issue remains, else OK."""
        return ExitCode.FAILED if self.critical else ExitCode.OK

    def summary_line(self) -> str:
        """Return the summary, such as ``3 issues found, 2 fixed, 1 critical``."""
        found = self.issues_found
        noun = "issue" if found == 1 else "issues"
        return f"{found} {noun} found, {self.fixed} fixed, {self.critical} critical"

    def summary(self) -> dict[str, int]:
        """Return the counts of the summary line as a dictionary."""
        return {
            "issues_found": self.issues_found,
            "fixed": self.fixed,
            "warnings": self.warnings,
            "critical": self.critical,
        }

    def first_critical(self) -> CheckResult | None:
        """Return the first critical check, if any."""
        for check in self.checks:
            if check.status is CheckStatus.FAIL:
                return check
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready document."""
        return {
            "check_only": self.check_only,
            "installed_version": self.installed_version,
            "summary": self.summary(),
            "summary_line": self.summary_line(),
            "installer_runs": self.installer_runs,
            "exit_code": int(self.exit_code),
            "checks": [check.to_dict() for check in self.checks],
        }

    def _count(self, status: CheckStatus) -> int:
        return sum(1 for check in self.checks if check.status is status)
