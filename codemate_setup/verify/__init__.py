"""Verification and repair of the application's runtime environment.

:func:`run_verification` runs the eight steps and returns a
:class:`VerificationReport`; ``verification_env.py`` is its command line.
"""

from codemate_setup.verify.model import CheckResult, CheckStatus, VerificationReport
from codemate_setup.verify.options import (
    Installer,
    Thresholds,
    VerifyLimits,
    VerifyOptions,
)
from codemate_setup.verify.runner import STEPS, run_verification

__all__ = [
    "STEPS",
    "CheckResult",
    "CheckStatus",
    "Installer",
    "Thresholds",
    "VerificationReport",
    "VerifyLimits",
    "VerifyOptions",
    "run_verification",
]
