"""The home folder before an update or rollback: folders, recovery, version."""

from __future__ import annotations

import logging
import os

from packaging.version import Version

from codemate_setup.config import HomeLayout
from codemate_setup.errors import InstallError, UsageError
from codemate_setup.listing import read_version_file
from codemate_setup.steps import StepReporter
from codemate_setup.transaction_recovery import RecoveryOutcome, recover
from codemate_setup.versions import parse_version

logger = logging.getLogger(__name__)


def recover_and_report(
    layout: HomeLayout, keep_backups: int, reporter: StepReporter
) -> RecoveryOutcome | None:
    """Finish or undo an interrupted transaction and record it in the state.

    Raises:
        InstallError: If the interrupted transaction cannot be undone.
    """
    outcome = recover(layout, keep_backups)
    if outcome is not None:
        reporter.tracker.set_phase_info(
            reporter.phase, "recovery", outcome.to_document()
        )
        reporter.warn(outcome.describe())
    return outcome


def read_installed_version(layout: HomeLayout) -> Version | None:
    """Return the installed version from ``version.txt``.

    Raises:
        InstallError: If the file contains something other than a version.
    """
    text = read_version_file(layout.version_file)
    if text is None:
        return None
    try:
        return parse_version(text)
    except UsageError as e:
        raise InstallError(
            f"{layout.version_file} must contain an installed version, got "
            f"{text[:40]!r}; delete it to install afresh"
        ) from e


def prepare_folders(layout: HomeLayout) -> None:
    """Create the home's folders and check that renames between them work.

    Raises:
        InstallError: If a folder cannot be created, or the install folder is
            on another file system than the home (moves would be copies).
    """
    folders = (layout.install_dir, layout.staging_dir, layout.backups_dir)
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        devices = {os.stat(folder).st_dev for folder in folders}
    except OSError as e:
        raise InstallError(
            f"cannot create the folders of {layout.home}: {e}; check the "
            "permissions or choose another home with --home"
        ) from e

    if len(devices) > 1:
        raise InstallError(
            f"the install folder {layout.install_dir} must be on the same file "
            f"system as the home {layout.home}, so files move by rename; choose "
            "an install folder on that drive with --install-dir"
        )
