"""The doctor-style report: one line per check, then the summary."""

from __future__ import annotations

import json

from codemate_setup.verify.model import MARKS, CheckResult, VerificationReport

# Width of the mark column, so values line up.
MARK_WIDTH = max(len(mark) for mark in MARKS.values()) + 1


def format_check(check: CheckResult) -> str:
    """Format one check as ``[mark] title: value; next: action``."""
    line = f"{MARKS[check.status]:<{MARK_WIDTH}}{check.title}: {check.value}"
    if check.action and check.is_issue:
        line += f"; next: {check.action}"
    return line


def format_report(report: VerificationReport, home: str) -> str:
    """Format the whole report for a terminal."""
    mode = " (check only: nothing was changed)" if report.check_only else ""
    lines = [f"CodeMate environment verification of {home}{mode}"]
    lines += [format_check(check) for check in report.checks]
    lines.append(report.summary_line())
    return "\n".join(lines)


def format_json(report: VerificationReport, home: str) -> str:
    """Format the report as an indented JSON document."""
    document = {"home": home, **report.to_dict()}
    return json.dumps(document, indent=2, ensure_ascii=False)
