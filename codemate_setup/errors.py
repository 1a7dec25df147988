"""Exit codes and the exception hierarchy shared by every script.

Each script catches :class:`SetupError` once, prints its message as one sentence,
logs the traceback at DEBUG and returns ``error.exit_code``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of every script in the toolkit."""

    OK = 0
    FAILED = 1
    USAGE = 2
    BUSY = 3
    INTERRUPTED = 130


class SetupError(Exception):
    """Base of every expected failure; the message is shown to the user as is."""

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(SetupError):
    """Invalid command-line usage or user input, such as a malformed version."""

    exit_code = ExitCode.USAGE


class SetupBusyError(SetupError):
    """Another setup has the setup lock of the home folder."""

    exit_code = ExitCode.BUSY


class SetupCancelledError(SetupError):
    """The setup was interrupted by SIGINT or SIGTERM."""

    exit_code = ExitCode.INTERRUPTED


class StateFileError(SetupError):
    """The state file cannot be read or written."""


class MiddlewareError(SetupError):
    """The middleware could not be reached or returned an unusable response."""


class ManifestError(SetupError):
    """A release manifest is malformed, too large or contains an unsafe path."""


class IntegrityError(SetupError):
    """Downloaded or installed bytes do not match their declared size or hash."""


class InstallError(SetupError):
    """Applying, recovering or rolling back an installation failed."""


class VerificationError(SetupError):
    """The runtime environment cannot be verified or repaired."""
