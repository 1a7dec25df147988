"""Show the setup state file, and export the tracker API.

Usage: ``python setup_tracker.py [--home DIR | --state-file FILE] [--json]``.
Other code imports ``from setup_tracker import SetupTracker, get_tracker``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from codemate_setup.startup import interrupt_exits_quietly

with interrupt_exits_quietly(__name__ == "__main__"):
    from codemate_setup.config import resolve_home
    from codemate_setup.errors import ExitCode, SetupError
    from codemate_setup.state import SetupTracker, get_tracker
    from codemate_setup.state.report import format_state
    from codemate_setup.state.store import StateStore

__all__ = ["SetupTracker", "get_tracker", "main"]

logger = logging.getLogger("setup_tracker")


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="setup_tracker.py",
        description="Print the current setup state of a CodeMate home.",
        epilog="Exit codes: 0 the state was printed or no setup has run, "
        "1 the state file is unreadable, 2 invalid usage.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--home",
        help="CodeMate home folder (default: $CODEMATE_HOME or ~/.codemate.test)",
    )
    where.add_argument("--state-file", help="path of a state file to read instead")
    parser.add_argument(
        "--json", action="store_true", help="print the raw state document"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the state chosen by ``args`` and return the exit code."""
    if args.state_file:
        path = Path(args.state_file).expanduser()
    else:
        path = resolve_home(args.home) / "setup_state.json"

    document = StateStore(path).read_for_report()
    if document is None:
        if args.json:
            print("null")
        else:
            print(f"No setup has run yet: {path} does not exist.")
        return ExitCode.OK

    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(format_state(document, path.parent))
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        logger.debug("state read failed", exc_info=True)
        return e.exit_code


def main_until_pipe_closes() -> int:
    """Run :func:`main`, and end quietly when the reader closes the output early.

    ``setup_tracker.py | head -3`` closes the pipe after three lines. Python
    would then print a traceback, and another error when it flushes the
    output at exit. So the output goes to the null device instead, and the
    status is 0, because the reader got the lines it requested.
    """
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK
    return code


if __name__ == "__main__":
    sys.exit(main_until_pipe_closes())
