"""Report a phase to the tracker: its numbered steps, warnings and outcome."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from codemate_setup.errors import SetupCancelledError, SetupError
from codemate_setup.state import OverallStatus, Phase, SetupTracker

logger = logging.getLogger(__name__)

# Called when a step starts, with its number (from 1), the step count and name.
StepListener = Callable[[int, int, str], None]


class StepReporter:
    """Record a phase's steps, in order, in the state file.

    Args:
        tracker: The tracker of the running setup.
        phase: The phase the steps belong to.
        steps: The step descriptions, in order.
        on_step: Also called when a step starts, such as to print it.
    """

    def __init__(
        self,
        tracker: SetupTracker,
        phase: Phase,
        steps: Sequence[str],
        on_step: StepListener | None = None,
    ) -> None:
        self.tracker = tracker
        self.phase = phase
        self.steps = tuple(steps)
        self.on_step = on_step
        self.current: int | None = None
        self.warnings: list[str] = []
        # Step 1 begins with the phase, in the same write.
        self._begun_with_phase: int | None = None

    def start_phase(self) -> None:
        """Mark the phase running with this reporter's step count.

        The first step begins in the same write; the phase starts right
        before its first step.
        """
        first = self.steps[0] if self.steps else None
        self.tracker.start_phase(self.phase, len(self.steps), first_step=first)
        self._begun_with_phase = 1 if first is not None else None

    @contextlib.contextmanager
    def step(self, number: int) -> Iterator[None]:
        """Run step ``number`` (from 1): begin it, and complete it on success."""
        name = self.steps[number - 1]
        self.current = number
        logger.info("step %d/%d: %s", number, len(self.steps), name)
        if self._begun_with_phase != number:
            self.tracker.begin_step(self.phase, name)
        self._begun_with_phase = None
        if self.on_step is not None:
            self.on_step(number, len(self.steps), name)

        yield

        # The next step's start, or the end of the phase, writes it too.
        self.tracker.complete_step(self.phase, name, defer=True)

    def progress(self, fraction: float, detail: dict[str, Any] | None = None) -> None:
        """Report how far the current step has come, from 0 to 1."""
        self.tracker.set_step_progress(self.phase, min(max(fraction, 0.0), 1.0), detail)

    def items(self, done: int, total: int) -> None:
        """Report progress of the current step as items done out of a total."""
        fraction = done / total if total else 1.0
        self.progress(fraction, {"items_done": done, "items_total": total})

    def warn(self, message: str) -> None:
        """Record a recoverable problem in the phase's warnings."""
        logger.warning("%s", message)
        self.warnings.append(message)
        self.tracker.add_warning(self.phase, message)


ResultT = TypeVar("ResultT")

# The reason a standalone update.py run leaves the verification phase out.
VERIFICATION_SKIP_REASON = (
    "update.py runs the codebase update only; run verification_env.py to "
    "verify the environment"
)


def run_reported_phase(
    reporter: StepReporter,
    own_setup: bool,
    target_version: str | None,
    work: Callable[[], ResultT],
) -> ResultT:
    """Run ``work`` as the reporter's phase, recording how it ends.

    With ``own_setup`` the run also starts a setup of its own and finishes it;
    otherwise it reports into the setup that another process owns.

    Raises:
        SetupError: Whatever ``work`` raises, after the phase is marked
            failed (and, with ``own_setup``, the setup failed or cancelled).
    """
    tracker = reporter.tracker
    if own_setup:
        tracker.start_setup(target_version=target_version)
    reporter.start_phase()

    try:
        result = work()
    except SetupCancelledError as e:
        _end_failed(reporter, own_setup, f"cancelled: {e}", OverallStatus.CANCELLED)
        raise
    except KeyboardInterrupt:
        message = "cancelled: interrupted by the user"
        _end_failed(reporter, own_setup, message, OverallStatus.CANCELLED)
        raise
    except SetupError as e:
        _end_failed(reporter, own_setup, str(e), OverallStatus.FAILED)
        raise
    except Exception as e:
        message = f"failed with an unexpected error ({type(e).__name__}: {e})"
        _end_failed(reporter, own_setup, message, OverallStatus.FAILED)
        raise

    # The setup's end, or the caller's next phase, writes it right after.
    tracker.complete_phase(reporter.phase, defer=True)
    if own_setup:
        _skip_other_phases(reporter)
        tracker.finish_setup(OverallStatus.COMPLETED)
    return result


def _end_failed(
    reporter: StepReporter, own_setup: bool, message: str, status: OverallStatus
) -> None:
    tracker = reporter.tracker
    try:
        tracker.fail_phase(reporter.phase, message)
        if own_setup:
            _skip_other_phases(reporter)
            tracker.finish_setup(status)
    except SetupError:
        # The original failure matters more than a state write that failed.
        logger.exception("cannot record the failure in the state file")


def _skip_other_phases(reporter: StepReporter) -> None:
    for phase in Phase:
        if phase is not reporter.phase:
            reporter.tracker.skip_phase(phase, VERIFICATION_SKIP_REASON)
