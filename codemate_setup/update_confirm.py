"""Confirmation of a major update: the yes/no question and where it is asked.

A major update goes ahead only with ``--yes`` or a yes from a
:data:`Confirm` function, which by default prompts on the terminal. Tests and
callers without a terminal pass their own function.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from packaging.version import Version

from codemate_setup.errors import UsageError

logger = logging.getLogger(__name__)

# A yes/no prompt: True or False, or None when no terminal is attached.
Confirm = Callable[[str], "bool | None"]


def confirm_on_terminal(question: str) -> bool | None:
    """Ask a yes/no question on the terminal.

    Returns:
        True for yes, False for no, or None when standard input is not a
        terminal.
    """
    if not (sys.stdin and sys.stdin.isatty()):
        return None
    # The question goes to stderr so that --json output stays one document.
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def confirm_major_update(
    installed: Version | None, target: Version, *, yes: bool, confirm: Confirm
) -> None:
    """Ask whether to go ahead with a major update, unless ``yes`` confirms it.

    Raises:
        UsageError: If ``confirm`` returns None because no terminal is
            attached, or returns False.
    """
    question = (
        f"Updating CodeMate from {installed} to {target} is a major update. Continue?"
    )
    if yes:
        logger.info("major update confirmed by --yes")
        return

    answer = confirm(question)
    if answer is None:
        raise UsageError(
            f"updating from {installed} to {target} is a major "
            "update and needs confirmation; pass --yes to confirm it"
        )
    if not answer:
        raise UsageError(f"the major update to {target} was declined; nothing changed")
