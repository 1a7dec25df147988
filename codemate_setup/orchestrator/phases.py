"""Running the two phases, in this process or as child processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from codemate_setup.config import RunOptions
from codemate_setup.errors import (
    ExitCode,
    SetupCancelledError,
    SetupError,
    UsageError,
)
from codemate_setup.orchestrator.options import SetupOptions
from codemate_setup.orchestrator.signals import PARENT_PID_VARIABLE
from codemate_setup.state import Phase, PhaseStatus, SetupTracker
from codemate_setup.verify.options import VerifyOptions

logger = logging.getLogger(__name__)

SCRIPTS_DIR = Path(__file__).resolve().parent.parent.parent
# Seconds a child phase gets to roll back after SIGTERM before it is killed.
CHILD_CANCEL_GRACE = 60.0


class Outcome(str, Enum):
    """Outcome of a phase."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class PhaseResult:
    """The outcome of one phase and, when it failed, why."""

    outcome: Outcome
    message: str | None = None
    invalid_input: bool = False


def run_update_phase(
    options: SetupOptions,
    tracker: SetupTracker,
    cancel: threading.Event,
    lock_fd: int | None = None,
) -> PhaseResult:
    """Run the codebase update and return how it ended.

    ``lock_fd`` is the descriptor of the held setup lock. A child phase
    inherits it, so the next setup cannot start while the child still runs,
    not even after this process was killed.
    """
    if options.isolated:
        script = str(SCRIPTS_DIR / "update.py")
        command = [
            sys.executable,
            script,
            str(options.version),
            *_common_flags(options),
        ]
        if options.yes:
            command.append("--yes")
        if options.allow_downgrade:
            command.append("--allow-downgrade")
        return _run_child(command, Phase.CODEBASE_UPDATE, tracker, cancel, lock_fd)

    from codemate_setup.updater import run_update

    return _run_in_process(
        lambda: run_update(
            _update_options(options),
            options.version,
            tracker=tracker,
            own_setup=False,
            yes=options.yes,
            cancel=cancel,
            allow_downgrade=options.allow_downgrade,
        ),
        Phase.CODEBASE_UPDATE,
        tracker,
    )


def run_verification_phase(
    options: SetupOptions,
    tracker: SetupTracker,
    cancel: threading.Event,
    lock_fd: int | None = None,
) -> PhaseResult:
    """Run the environment verification and return how it ended.

    ``lock_fd`` is passed on as in :func:`run_update_phase`.
    """
    if options.isolated:
        command = [sys.executable, str(SCRIPTS_DIR / "verification_env.py")]
        command += _common_flags(options) + _verify_flags(options)
        return _run_child(
            command, Phase.ENVIRONMENT_VERIFICATION, tracker, cancel, lock_fd
        )

    from codemate_setup.verify.runner import run_verification

    # A critical issue marks the phase failed in the state file, where
    # _result_from_state finds it.
    return _run_in_process(
        lambda: run_verification(
            _verify_options(options), tracker=tracker, own_setup=False, cancel=cancel
        ),
        Phase.ENVIRONMENT_VERIFICATION,
        tracker,
    )


def _run_in_process(
    call: Callable[[], object], phase: Phase, tracker: SetupTracker
) -> PhaseResult:
    try:
        call()
    except SetupCancelledError as e:
        _mark_failed(tracker, phase, f"cancelled: {e}")
        return PhaseResult(Outcome.CANCELLED, str(e))
    except SetupError as e:
        logger.debug("%s failed", phase.value, exc_info=True)
        _mark_failed(tracker, phase, str(e))
        return PhaseResult(Outcome.FAILED, str(e), isinstance(e, UsageError))
    return _result_from_state(tracker, phase)


def _run_child(
    command: list[str],
    phase: Phase,
    tracker: SetupTracker,
    cancel: threading.Event,
    lock_fd: int | None,
) -> PhaseResult:
    env = dict(os.environ, CODEMATE_SETUP_ID=tracker.setup_id or "")
    env[PARENT_PID_VARIABLE] = str(os.getpid())
    logger.info("running %s", " ".join(command))
    # The child keeps the setup lock held while it rolls back after this
    # process was killed, so a setup started meanwhile exits with code 3.
    inherited = (lock_fd,) if lock_fd is not None else ()
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, pass_fds=inherited
    )

    while True:
        try:
            code = child.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if cancel.is_set():
                # The child rolls back on SIGTERM, like this process on SIGINT.
                _stop_child(child)

    logger.info("%s exited with %s", command[1], code)
    if code == ExitCode.INTERRUPTED or code == -signal.SIGTERM:
        _mark_failed(tracker, phase, "cancelled")
        return PhaseResult(Outcome.CANCELLED, "cancelled")
    if code != ExitCode.OK:
        message = (
            _phase_error(tracker, phase) or f"{command[1]} exited with code {code}"
        )
        _mark_failed(tracker, phase, message)
        return PhaseResult(Outcome.FAILED, message, code == ExitCode.USAGE)
    return _result_from_state(tracker, phase)


def _stop_child(child: subprocess.Popen) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=CHILD_CANCEL_GRACE)
    except subprocess.TimeoutExpired:
        logger.error("child %s did not stop after SIGTERM; killing it", child.pid)
        child.kill()
        child.wait()


def _result_from_state(tracker: SetupTracker, phase: Phase) -> PhaseResult:
    document = tracker.load_setup_state() or {}
    phase_doc = document.get("phases", {}).get(phase.value, {})
    status = phase_doc.get("status")
    if status == PhaseStatus.FAILED.value:
        return PhaseResult(Outcome.FAILED, phase_doc.get("error"))
    if status in (PhaseStatus.RUNNING.value, PhaseStatus.PENDING.value):
        tracker.complete_phase(phase)
    return PhaseResult(Outcome.COMPLETED)


def _phase_error(tracker: SetupTracker, phase: Phase) -> str | None:
    document = tracker.load_setup_state() or {}
    return document.get("phases", {}).get(phase.value, {}).get("error")


def _mark_failed(tracker: SetupTracker, phase: Phase, message: str) -> None:
    document = tracker.load_setup_state() or {}
    status = document.get("phases", {}).get(phase.value, {}).get("status")
    if status != PhaseStatus.FAILED.value:
        tracker.fail_phase(phase, message)


def _common_flags(options: SetupOptions) -> list[str]:
    flags = [
        "--home",
        str(options.layout.home),
        "--middleware-url",
        options.middleware_url,
    ]
    if options.layout.install_dir != options.layout.home / "app":
        flags += ["--install-dir", str(options.layout.install_dir)]
    if options.repo:
        flags += ["--repo", options.repo]
    if options.allow_insecure_http:
        flags.append("--allow-insecure-http")
    return flags


def _verify_flags(options: SetupOptions) -> list[str]:
    flags = ["--installer", options.installer]
    if options.index_url:
        flags += ["--index-url", options.index_url]
    if options.find_links:
        flags += ["--find-links", options.find_links]
    return flags


def _update_options(options: SetupOptions) -> RunOptions:
    return RunOptions(
        layout=options.layout,
        middleware_url=options.middleware_url,
        repo=options.repo,
        allow_insecure_http=options.allow_insecure_http,
        limits=options.limits,
    )


def _verify_options(options: SetupOptions) -> VerifyOptions:
    return VerifyOptions(
        layout=options.layout,
        middleware_url=options.middleware_url,
        installer=options.installer,
        index_url=options.index_url,
        find_links=options.find_links,
    )
