"""Verify and repair the CodeMate runtime environment.

Usage: ``python verification_env.py [--home DIR] [--check-only] [--json] ...``;
``--help`` lists every option. Exit codes: 0 nothing critical remains, 1 a
critical issue remains, 2 invalid usage, 3 another setup is running in this
home, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from codemate_setup.startup import interrupt_exits_quietly

with interrupt_exits_quietly(__name__ == "__main__"):
    from codemate_setup.cli import add_home_arguments, add_middleware_arguments
    from codemate_setup.config import HomeLayout, resolve_middleware_url
    from codemate_setup.errors import ExitCode, SetupError
    from codemate_setup.logs import configure_run_logging
    from codemate_setup.middleware_url import validate_base_url
    from codemate_setup.orchestrator.signals import (
        CancelToken,
        cancel_on_signals,
        cancel_when_parent_exits,
        watched_parent,
    )
    from codemate_setup.setuplock import hold_setup_lock
    from codemate_setup.verify import (
        Installer,
        Thresholds,
        VerifyOptions,
        run_verification,
    )
    from codemate_setup.verify.model import VerificationReport
    from codemate_setup.verify.options import (
        MIB,
        MIN_FREE_DISK_VARIABLE,
        MIN_MEMORY_VARIABLE,
        parse_megabytes,
        threshold_from_environment,
    )
    from codemate_setup.verify.report import format_json, format_report
    from codemate_setup.verify.runner import validate_options

logger = logging.getLogger("verification_env")

# Set by the orchestrator when it runs this script as one phase of its setup.
SETUP_ID_VARIABLE = "CODEMATE_SETUP_ID"

EPILOG = f"""\
Without --check-only the run repairs what it can: it creates or rebuilds the
environment, installs missing or mismatched packages and restores a missing
requirements file from the middleware. --check-only changes no file and reports
what a repair would do; it writes neither a log file nor the state file unless
{SETUP_ID_VARIABLE} is set.

When {SETUP_ID_VARIABLE} is set, progress goes into that running setup.
Otherwise the run records a setup of its own in the home's setup_state.json.

Exit codes: 0 nothing critical remains, 1 a critical issue remains, 2 invalid
usage, 3 another setup is running in this home, 130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="verification_env.py",
        description="Verify and repair the CodeMate runtime environment.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    where = parser.add_argument_group("home and middleware")
    add_home_arguments(where)
    add_middleware_arguments(where)

    mode = parser.add_argument_group("what to do")
    mode.add_argument(
        "--check-only",
        action="store_true",
        help="diagnose only; change nothing on disk",
    )
    mode.add_argument(
        "--deep",
        action="store_true",
        help="compare the SHA-256 of every application file, not only its size",
    )
    mode.add_argument(
        "--json", action="store_true", help="print the report as a JSON document"
    )
    mode.add_argument(
        "--verbose", action="store_true", help="show progress messages on stderr"
    )

    packages = parser.add_argument_group("environment and packages")
    packages.add_argument(
        "--installer",
        choices=[tool.value for tool in Installer],
        default=Installer.AUTO.value,
        help="tool that creates the environment and installs packages; auto uses "
        "uv when it is found, else python -m venv and pip (default: auto)",
    )
    packages.add_argument("--index-url", help="package index URL for installs")
    packages.add_argument(
        "--find-links",
        action="append",
        default=[],
        metavar="DIR",
        help="folder or URL of wheels for installs; repeatable",
    )
    packages.add_argument(
        "--no-index",
        action="store_true",
        help="install only from --find-links, never from a package index",
    )
    packages.add_argument(
        "--python",
        metavar="PATH",
        help="interpreter that creates the environment (default: this one); an "
        "environment built from another Python version is rebuilt",
    )

    limits = parser.add_argument_group("warning thresholds")
    limits.add_argument(
        "--min-free-disk-mb",
        metavar="MB",
        help=f"free disk in MiB below which a warning is shown (default: "
        f"${MIN_FREE_DISK_VARIABLE} or {Thresholds.min_free_disk_bytes // MIB})",
    )
    limits.add_argument(
        "--min-memory-mb",
        metavar="MB",
        help=f"available memory in MiB below which a warning is shown (default: "
        f"${MIN_MEMORY_VARIABLE} or {Thresholds.min_memory_bytes // MIB})",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> VerifyOptions:
    """Turn parsed arguments into verification options.

    Raises:
        UsageError: If a threshold is not a whole number of MiB.
    """
    defaults = Thresholds()
    disk = threshold_from_environment(
        MIN_FREE_DISK_VARIABLE, defaults.min_free_disk_bytes
    )
    memory = threshold_from_environment(MIN_MEMORY_VARIABLE, defaults.min_memory_bytes)
    if args.min_free_disk_mb is not None:
        disk = parse_megabytes(args.min_free_disk_mb, "--min-free-disk-mb") * MIB
    if args.min_memory_mb is not None:
        memory = parse_megabytes(args.min_memory_mb, "--min-memory-mb") * MIB

    return VerifyOptions(
        layout=HomeLayout.create(args.home, args.install_dir),
        # Checked here, as the other scripts do, even when no step needs it.
        middleware_url=validate_base_url(
            resolve_middleware_url(args.middleware_url),
            allow_insecure_http=args.allow_insecure_http,
        ),
        check_only=args.check_only,
        deep=args.deep,
        installer=Installer(args.installer),
        index_url=args.index_url,
        find_links=tuple(args.find_links),
        no_index=args.no_index,
        python=Path(args.python).expanduser() if args.python else None,
        repo=args.repo,
        allow_insecure_http=args.allow_insecure_http,
        thresholds=Thresholds(
            min_free_disk_bytes=disk,
            min_memory_bytes=memory,
            python_requires=defaults.python_requires,
        ),
    )


def run(args: argparse.Namespace) -> int:
    """Run the verification for parsed arguments and return the exit code."""
    options = options_from_args(args)
    validate_options(options)
    setup_id = os.environ.get(SETUP_ID_VARIABLE) or None
    records_state = setup_id is not None or not options.check_only

    if records_state:
        configure_run_logging(
            options.layout.logs_dir, "verification", verbose=args.verbose
        )
    else:
        _configure_terminal_logging(args.verbose)

    own_setup = setup_id is None
    # A standalone repair writes the state file and the environment, so it takes
    # the home's setup lock; a check-only run changes nothing and needs none.
    lock = (
        hold_setup_lock(options.layout)
        if own_setup and records_state
        else contextlib.nullcontext()
    )
    with (
        lock,
        cancel_on_signals(CancelToken()) as token,
        cancel_when_parent_exits(token, watched_parent() if setup_id else None),
    ):
        report = _verify(options, setup_id, records_state, token)

    home = str(options.layout.home)
    print(format_json(report, home) if args.json else format_report(report, home))
    return int(report.exit_code)


def _configure_terminal_logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def _verify(
    options: VerifyOptions,
    setup_id: str | None,
    records_state: bool,
    token: CancelToken,
) -> VerificationReport:
    tracker = None
    if records_state:
        # Imported here so a check-only run does not load the tracker at all.
        from setup_tracker import SetupTracker

        tracker = SetupTracker(options.layout.state_file)
        if setup_id is not None:
            tracker.join_setup(setup_id)

    try:
        return run_verification(
            options, tracker=tracker, own_setup=setup_id is None, cancel=token.event
        )
    finally:
        if tracker is not None:
            tracker.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        logger.debug("verification stopped", exc_info=True)
        return int(e.exit_code)
    except Exception as e:
        print(
            f"error: unexpected failure: {e}; the log file has the details",
            file=sys.stderr,
        )
        logger.exception("unexpected failure of the verification")
        return int(ExitCode.FAILED)


if __name__ == "__main__":
    sys.exit(main())
