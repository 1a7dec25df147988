"""The whole setup: update, then verification, under one setup lock."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass

from packaging.version import Version

from codemate_setup.errors import ExitCode, SetupError, StateFileError, UsageError
from codemate_setup.orchestrator.options import SetupOptions
from codemate_setup.orchestrator.phases import (
    Outcome,
    PhaseResult,
    run_update_phase,
    run_verification_phase,
)
from codemate_setup.orchestrator.signals import CancelToken, cancel_on_signals
from codemate_setup.setuplock import hold_setup_lock
from codemate_setup.state import (
    Liveness,
    OverallStatus,
    Phase,
    PhaseStatus,
    SetupTracker,
    assess,
)
from codemate_setup.versions import parse_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetupResult:
    """Outcome of a setup, for the summary and the exit code."""

    setup_id: str
    status: OverallStatus
    exit_code: ExitCode
    error_details: str | None
    phases: dict[str, str]


def run_setup(
    options: SetupOptions,
    token: CancelToken | None = None,
    display: Callable[[], ContextManager[object]] | None = None,
) -> SetupResult:
    """Run a setup from start to end and record it in the state file.

    Args:
        options: What to install and how.
        token: Cancel token; SIGINT and SIGTERM set it while the setup runs.
        display: Factory of a progress display, entered once the setup lock is
            held so that a refused run shows nothing of the running setup.

    Raises:
        SetupBusyError: If another setup has the setup lock of this home.
        UsageError: If no VERSION was given and no interrupted setup
            recorded one to resume.
        SetupError: If the state file cannot be written.
    """
    token = token or CancelToken()
    progress_view = display() if display is not None else contextlib.nullcontext()
    with (
        hold_setup_lock(options.layout) as lock_fd,
        cancel_on_signals(token),
        progress_view,
    ):
        tracker = SetupTracker(options.layout.state_file)
        try:
            return _run_locked(options, tracker, token, lock_fd)
        finally:
            tracker.close()


def _run_locked(
    options: SetupOptions,
    tracker: SetupTracker,
    token: CancelToken,
    lock_fd: int | None,
) -> SetupResult:
    done = _start_or_resume(options, tracker)
    results: dict[Phase, PhaseResult] = {}

    if Phase.CODEBASE_UPDATE in done:
        logger.info("codebase_update completed in the interrupted run; skipping it")
    elif options.skip_update:
        tracker.skip_phase(Phase.CODEBASE_UPDATE, "--skip-update was given")
    else:
        results[Phase.CODEBASE_UPDATE] = run_update_phase(
            options, tracker, token.event, lock_fd
        )

    if _cancelled(results, token):
        return _finish(tracker, OverallStatus.CANCELLED, results, token)

    if Phase.ENVIRONMENT_VERIFICATION in done:
        logger.info("environment_verification completed in the interrupted run")
    elif options.skip_verification:
        tracker.skip_phase(
            Phase.ENVIRONMENT_VERIFICATION, "--skip-verification was given"
        )
    elif not options.layout.version_file.exists():
        tracker.skip_phase(
            Phase.ENVIRONMENT_VERIFICATION, "no installation to verify in this home"
        )
    else:
        results[Phase.ENVIRONMENT_VERIFICATION] = run_verification_phase(
            options, tracker, token.event, lock_fd
        )

    if _cancelled(results, token):
        return _finish(tracker, OverallStatus.CANCELLED, results, token)

    failed = any(result.outcome is Outcome.FAILED for result in results.values())
    status = OverallStatus.FAILED if failed else OverallStatus.COMPLETED
    return _finish(tracker, status, results, token)


def _exit_code(status: OverallStatus, results: dict[Phase, PhaseResult]) -> ExitCode:
    if status is OverallStatus.COMPLETED:
        return ExitCode.OK
    if status is OverallStatus.CANCELLED:
        return ExitCode.INTERRUPTED
    # A phase that rejected its input (an unknown release, an unconfirmed major
    # update, an invalid URL) makes the whole setup an input error.
    if any(result.invalid_input for result in results.values()):
        return ExitCode.USAGE
    return ExitCode.FAILED


def _start_or_resume(options: SetupOptions, tracker: SetupTracker) -> set[Phase]:
    """Start a new setup, or take over the interrupted one with --resume.

    Returns:
        The phases that already completed in the resumed setup.
    """
    if options.resume:
        previous = _previous_setup(tracker)
        liveness = assess(previous)
        if previous is not None and liveness in (
            Liveness.INTERRUPTED,
            Liveness.FINISHED,
        ):
            if previous.get("overall_status") != OverallStatus.COMPLETED.value:
                return _resume(options, tracker, previous)
            logger.info(
                "setup %s already completed; starting a new one", previous["setup_id"]
            )
        else:
            logger.info("no interrupted setup to resume; starting a new one")

    if options.version is None and not options.skip_update:
        raise UsageError(
            f"missing VERSION: no interrupted setup to resume in "
            f"{options.layout.home}; pass the release to install, e.g. 3.0.0"
        )
    target = str(options.version) if options.version is not None else None
    tracker.start_setup(target)
    return set()


def _previous_setup(tracker: SetupTracker) -> dict | None:
    """Read the setup to resume; a corrupt state file leaves nothing to resume.

    ``start_setup`` then moves the corrupt file aside, as for a run without
    ``--resume``.
    """
    try:
        return tracker.load_setup_state()
    except StateFileError as e:
        if not tracker.state_file_path.is_file():
            raise
        logger.warning("%s; nothing to resume, starting a new setup", e)
        return None


def _resume(options: SetupOptions, tracker: SetupTracker, previous: dict) -> set[Phase]:
    # Only completed phases are done: a phase that was skipped (for a flag, or
    # because nothing was installed yet) is decided again by this run.
    done = {
        phase
        for phase in Phase
        if previous["phases"][phase.value]["status"] == PhaseStatus.COMPLETED.value
    }
    if (
        options.version is None
        and Phase.CODEBASE_UPDATE not in done
        and not options.skip_update
    ):
        options.version = _recorded_target(previous)

    tracker.resume_setup()
    logger.info(
        "resuming setup %s; phases already done: %s",
        previous["setup_id"],
        ", ".join(sorted(phase.value for phase in done)) or "none",
    )
    return done


def _recorded_target(previous: dict) -> Version:
    """Return the target version that the interrupted setup recorded.

    Raises:
        UsageError: If it recorded none, or one that is not a version.
    """
    recorded = previous.get("target_version")
    try:
        return parse_version(recorded)
    except UsageError as e:
        raise UsageError(
            f"missing VERSION: the interrupted setup {previous.get('setup_id')} "
            f"recorded no usable target version ({recorded!r}); pass the release "
            "to install, e.g. 3.0.0"
        ) from e


def _cancelled(results: dict[Phase, PhaseResult], token: CancelToken) -> bool:
    return token.cancelled or any(
        result.outcome is Outcome.CANCELLED for result in results.values()
    )


def _finish(
    tracker: SetupTracker,
    status: OverallStatus,
    results: dict[Phase, PhaseResult],
    token: CancelToken,
) -> SetupResult:
    error = None
    if status is OverallStatus.CANCELLED:
        phase = next(iter(reversed(results)), Phase.CODEBASE_UPDATE)
        error = f"{phase.value}: cancelled by {token.signal_name or 'the user'}"
    tracker.finish_setup(status, error)

    document = tracker.load_setup_state() or {}
    return SetupResult(
        setup_id=tracker.setup_id or "",
        status=status,
        exit_code=_exit_code(status, results),
        error_details=document.get("error_details"),
        phases={
            name: phase_doc["status"]
            for name, phase_doc in document.get("phases", {}).items()
        },
    )


__all__ = ["SetupError", "SetupResult", "run_setup"]
