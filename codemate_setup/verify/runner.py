"""The verification run: eight steps reported through the state file."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from codemate_setup.config import service_ports
from codemate_setup.errors import (
    SetupCancelledError,
    SetupError,
    UsageError,
    VerificationError,
)
from codemate_setup.verify import (
    environment_step,
    packages_step,
    requirements_step,
    steps,
)
from codemate_setup.verify.context import PHASE, NullSink, ProgressSink, VerifyContext
from codemate_setup.verify.environment import choose_installer, find_uv
from codemate_setup.verify.leftovers import ChildRecords, recording_children
from codemate_setup.verify.model import VerificationReport
from codemate_setup.verify.options import VerifyOptions

logger = logging.getLogger(__name__)

UPDATE_PHASE = "codebase_update"

Step = Callable[[VerifyContext], None]


def _finalize(ctx: VerifyContext) -> None:
    """Step 8: the summary of issues found, fixed and critical."""
    # The phase's end, right after this step, writes both keys.
    ctx.sink.set_phase_info(PHASE, "summary", ctx.report.summary(), defer=True)
    ctx.sink.set_phase_info(
        PHASE, "checks", [check.to_dict() for check in ctx.report.checks], defer=True
    )
    logger.info("verification summary: %s", ctx.report.summary_line())


STEPS: tuple[tuple[str, Step], ...] = (
    ("Preparing for environment verification", steps.prepare),
    ("Checking system requirements", steps.check_system),
    ("Initializing environment manager", environment_step.prepare_environment),
    ("Fetching requirements", requirements_step.fetch_requirements),
    ("Verifying Python packages", packages_step.verify_packages),
    ("Verifying application files", steps.check_files),
    ("Checking service ports", steps.check_service_ports),
    ("Finalizing verification", _finalize),
)


def run_verification(
    options: VerifyOptions,
    *,
    tracker: ProgressSink | None,
    own_setup: bool,
    cancel: threading.Event | None = None,
) -> VerificationReport:
    """Verify and repair the runtime environment, reporting every step.

    Args:
        options: What to check and how.
        tracker: The state file's tracker; None writes no state (a
            check-only run that must leave every file unchanged).
        own_setup: Start a setup of its own (with the codebase update marked
            skipped) and finish it; False reports into a setup that the
            caller started and finishes.
        cancel: Set to stop the run; checked between steps and while an
            installer runs.

    Returns:
        The report. ``report.exit_code`` is FAILED when a critical issue
        remains; the phase is then marked failed in the state file.

    Raises:
        UsageError: If an option is invalid (before anything is recorded).
        SetupCancelledError: If ``cancel`` was set; the phase and, with
            ``own_setup``, the setup are recorded as cancelled first.
    """
    sink: ProgressSink = tracker if tracker is not None else NullSink()
    ctx = _build_context(options, sink, cancel)

    if own_setup:
        sink.start_setup(None)
        sink.skip_phase(
            UPDATE_PHASE, "standalone verification; the codebase is not updated"
        )
    first_step = STEPS[0][0]
    sink.start_phase(PHASE, len(STEPS), first_step=first_step)

    try:
        _run_steps(ctx, sink, first_step)
    except SetupCancelledError as e:
        _record_end(sink, own_setup, "cancelled", str(e))
        raise
    except BaseException as e:
        reason = str(e) if isinstance(e, SetupError) else f"unexpected error: {e!r}"
        _record_end(sink, own_setup, "failed", reason)
        raise

    report = ctx.report
    if report.critical == 0:
        # The setup's end, here or in the caller, writes it right after.
        sink.complete_phase(PHASE, defer=True)
        if own_setup:
            sink.finish_setup("completed")
    else:
        _record_end(sink, own_setup, "failed", _failure_sentence(report))
    return report


def _run_steps(ctx: VerifyContext, sink: ProgressSink, first_step: str) -> None:
    records = None
    if not ctx.options.check_only:
        # A check-only run starts no tool that changes anything, and writes nothing.
        records = ChildRecords(ctx.options.layout.children_dir)
    with recording_children(records):
        for name, step in STEPS:
            ctx.check_cancelled()
            logger.debug("step: %s", name)
            if name != first_step:
                sink.begin_step(PHASE, name)
            step(ctx)
            sink.complete_step(PHASE, name, defer=True)


def validate_options(options: VerifyOptions) -> None:
    """Check the options the way :func:`run_verification` does, without running.

    A caller can reject invalid usage before it creates a log file or a
    state file.

    Raises:
        UsageError: If an option is invalid.
    """
    _build_context(options, NullSink(), None)


def _failure_sentence(report: VerificationReport) -> str:
    first = report.first_critical()
    assert first is not None
    count = report.critical
    noun = "critical issue remains" if count == 1 else "critical issues remain"
    return f"{count} {noun}, first {first.title}: {first.value}"


def _record_end(sink: ProgressSink, own_setup: bool, status: str, message: str) -> None:
    """Record a failed or cancelled phase; never mask the original error."""
    try:
        sink.fail_phase(PHASE, message)
        if own_setup:
            sink.finish_setup(status, f"{PHASE}: {message}")
    except Exception:
        logger.exception("cannot record the end of the verification")


def _build_context(
    options: VerifyOptions, sink: ProgressSink, cancel: threading.Event | None
) -> VerifyContext:
    """Validate the options and resolve the tools, before anything is recorded.

    Raises:
        UsageError: If ``--python`` does not exist or cannot run, uv is
            requested but missing, or a port variable is invalid.
    """
    if options.python is not None and not Path(options.python).exists():
        raise UsageError(
            f"invalid --python {options.python}: the file does not exist; pass the "
            "path of a Python interpreter"
        )

    uv_path = find_uv(options.uv_path)
    tool = choose_installer(options.installer, uv_path)
    ports = dict(options.ports) if options.ports is not None else service_ports()
    base_python = Path(options.python) if options.python else Path(sys.executable)
    try:
        base_version = steps.base_interpreter_version(
            options.python, options.verify_limits.probe_timeout
        )
    except VerificationError as e:
        raise UsageError(f"invalid --python {options.python}: {e}") from e

    logger.debug(
        "verification of %s: installer %s (uv %s), python %s %s, check_only=%s",
        options.layout.home,
        tool.value,
        uv_path,
        base_python,
        base_version,
        options.check_only,
    )
    return VerifyContext(
        options=options,
        sink=sink,
        cancel=cancel,
        report=VerificationReport(check_only=options.check_only),
        base_python=base_python,
        base_version=base_version,
        tool=tool,
        uv_path=uv_path,
        ports=ports,
    )
