"""Tests of the doctor-style report and its JSON form."""

from __future__ import annotations

import json

from codemate_setup.verify.model import CheckResult, CheckStatus, VerificationReport
from codemate_setup.verify.report import format_check, format_json, format_report


def sample_report(check_only: bool = False) -> VerificationReport:
    report = VerificationReport(check_only=check_only, installed_version="3.0.0")
    report.add(
        CheckResult("system.platform", "platform", CheckStatus.OK, "Linux on x86_64"),
        CheckResult(
            "system.disk",
            "free disk",
            CheckStatus.WARN,
            "1.0 GiB free (threshold 2.0 GiB)",
            "free disk space",
        ),
        CheckResult(
            "environment", "environment", CheckStatus.FIXED, "created /h/environment"
        ),
        CheckResult(
            "packages",
            "Python packages",
            CheckStatus.FAIL,
            "pip failed to install cm-alpha==1.0",
            "read the log file",
        ),
    )
    return report


def test_each_mark_per_status() -> None:
    lines = [format_check(check) for check in sample_report().checks]

    assert lines == [
        "[ok]    platform: Linux on x86_64",
        "[warn]  free disk: 1.0 GiB free (threshold 2.0 GiB); next: free disk space",
        "[fixed] environment: created /h/environment",
        "[FAIL]  Python packages: pip failed to install cm-alpha==1.0; next: read the "
        "log file",
    ]


def test_ok_line_hides_action() -> None:
    check = CheckResult("x", "x", CheckStatus.OK, "fine", "nothing")

    assert format_check(check) == "[ok]    x: fine"


def test_summary_counts_found_fixed_critical() -> None:
    report = sample_report()

    assert report.summary_line() == "3 issues found, 1 fixed, 1 critical"
    assert report.summary() == {
        "issues_found": 3,
        "fixed": 1,
        "warnings": 1,
        "critical": 1,
    }


def test_exit_code_follows_critical() -> None:
    clean = VerificationReport()
    clean.add(CheckResult("a", "a", CheckStatus.WARN, "low"))

    assert sample_report().exit_code == 1
    assert clean.exit_code == 0
    assert clean.summary_line() == "1 issue found, 0 fixed, 0 critical"


def test_report_text_has_header_and_summary() -> None:
    text = format_report(sample_report(check_only=True), "/h")

    lines = text.splitlines()
    assert lines[0] == (
        "CodeMate environment verification of /h (check only: nothing was changed)"
    )
    assert lines[-1] == "3 issues found, 1 fixed, 1 critical"
    assert len(lines) == 6


def test_json_report_document() -> None:
    document = json.loads(format_json(sample_report(), "/h"))

    assert document["home"] == "/h"
    assert document["exit_code"] == 1
    assert document["installed_version"] == "3.0.0"
    assert document["summary"]["critical"] == 1
    assert document["checks"][1] == {
        "check": "system.disk",
        "title": "free disk",
        "status": "warn",
        "value": "1.0 GiB free (threshold 2.0 GiB)",
        "action": "free disk space",
        "detail": {},
    }


def test_warning_message_for_state_file() -> None:
    check = sample_report().checks[1]

    assert (
        check.message()
        == "free disk: 1.0 GiB free (threshold 2.0 GiB); free disk space"
    )
