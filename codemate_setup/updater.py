"""The update workflow: ten reported steps from the installed version to a target.

Nothing in the install folder changes before step 7. Steps 7 to 9 run inside
a :class:`~codemate_setup.transaction.Transaction`, so a failure or a cancel
there rolls every move back, and a crash is rolled back (or, once committed,
completed) by the next run's step 1.

:func:`run_update` starts a run. :mod:`codemate_setup.update_run` runs the
steps in order and contains steps 1 to 4,
:mod:`codemate_setup.update_staging` contains steps 5 and 6, and
:mod:`codemate_setup.update_install` contains steps 7 to 10.
:mod:`codemate_setup.update_result` contains the result type, and
:mod:`codemate_setup.update_confirm` the confirmation of a major update.
"""

from __future__ import annotations

import threading

from packaging.version import Version

from codemate_setup.config import RunOptions
from codemate_setup.state import Phase, SetupTracker
from codemate_setup.steps import StepListener, StepReporter, run_reported_phase
from codemate_setup.update_confirm import Confirm, confirm_on_terminal
from codemate_setup.update_result import UpdateResult
from codemate_setup.update_run import UpdateRun
from codemate_setup.versions import parse_version

PHASE = Phase.CODEBASE_UPDATE

UPDATE_STEPS = (
    "Initializing installation process",
    "Retrieving system information from remote server",
    "Fetching installation manifest",
    "Comparing installed files",
    "Downloading application files",
    "Verifying file integrity",
    "Backing up current installation",
    "Applying update",
    "Recording installed version",
    "Finalizing installation",
)


def run_update(
    options: RunOptions,
    version: Version | str,
    *,
    tracker: SetupTracker,
    own_setup: bool,
    yes: bool = False,
    cancel: threading.Event | None = None,
    allow_downgrade: bool = False,
    confirm: Confirm = confirm_on_terminal,
    on_step: StepListener | None = None,
) -> UpdateResult:
    """Install or update the codebase to ``version`` from the middleware.

    Args:
        options: Home layout, middleware URL, repo and limits.
        version: The target version.
        tracker: Receives the ``codebase_update`` phase's steps and progress.
        own_setup: Start and finish a setup of its own in the state file;
            False when an orchestrator owns the setup.
        yes: Confirm a major update without asking.
        cancel: When set, the update stops and rolls back what it changed.
        allow_downgrade: Install a version older than the installed one.
        confirm: Asks whether to go ahead with a major update.
        on_step: Called when each step starts.

    Returns:
        What the update did.

    Raises:
        UsageError: For an unknown or older version, or a major update that
            was not confirmed.
        ManifestError: For an invalid manifest; nothing was changed.
        MiddlewareError: If the middleware fails; nothing was changed.
        IntegrityError: If downloaded files do not match; nothing was changed.
        InstallError: If applying fails; the old version was restored.
        SetupCancelledError: If ``cancel`` was set; the old version is intact.
    """
    target = version if isinstance(version, Version) else parse_version(str(version))
    reporter = StepReporter(tracker, PHASE, UPDATE_STEPS, on_step)
    update = UpdateRun(
        options,
        target,
        reporter,
        yes=yes,
        allow_downgrade=allow_downgrade,
        confirm=confirm,
        cancel=cancel or threading.Event(),
    )
    return run_reported_phase(reporter, own_setup, str(target), update.run)
