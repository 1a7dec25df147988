"""Run a whole CodeMate setup: update the codebase, then verify the environment.

Usage: ``python setup_orchestrator.py 3.0.0`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence

from codemate_setup.startup import interrupt_exits_quietly

with interrupt_exits_quietly(__name__ == "__main__"):
    from codemate_setup.cli import add_home_arguments, add_middleware_arguments
    from codemate_setup.config import HomeLayout, resolve_middleware_url, service_ports
    from codemate_setup.errors import ExitCode, SetupError, UsageError
    from codemate_setup.logs import configure_run_logging
    from codemate_setup.middleware_url import validate_base_url
    from codemate_setup.orchestrator.display import ProgressDisplay
    from codemate_setup.orchestrator.options import SetupOptions
    from codemate_setup.orchestrator.status import show_status, wait_for_setup
    from codemate_setup.orchestrator.workflow import SetupResult, run_setup
    from codemate_setup.versions import parse_version

logger = logging.getLogger("setup_orchestrator")

EXIT_CODES_HELP = """exit codes:
  0    the setup completed
  1    a phase failed (or, with --wait, the setup failed, was interrupted or timed out)
  2    invalid usage or input
  3    another setup is running in this home
  130  interrupted by SIGINT or SIGTERM (or, with --wait, the setup was cancelled
       or the wait itself was interrupted)
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="setup_orchestrator.py",
        description="Install or update CodeMate to VERSION, then verify and repair "
        "its runtime environment. Progress goes to setup_state.json in the home.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("version", nargs="?", help="release to install, e.g. 3.0.0")
    add_home_arguments(parser)
    add_middleware_arguments(parser)
    parser.add_argument(
        "--yes", action="store_true", help="confirm a major update without asking"
    )
    parser.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="install VERSION from the middleware even if it is older than the "
        "installed version",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted setup: completed phases are skipped",
    )
    parser.add_argument(
        "--skip-update", action="store_true", help="do not run the update"
    )
    parser.add_argument(
        "--skip-verification", action="store_true", help="do not run the verification"
    )
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="run each phase as a child process (update.py, verification_env.py)",
    )
    parser.add_argument(
        "--installer",
        choices=["auto", "uv", "pip"],
        default="auto",
        help="package installer for the verification (default: auto, uv when present)",
    )
    parser.add_argument(
        "--index-url", help="package index for the verification's installs"
    )
    parser.add_argument(
        "--find-links", help="folder of wheels for the verification's installs"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--verbose", action="store_true", help="show INFO log lines")

    reading = parser.add_argument_group("reading a setup instead of running one")
    reading.add_argument(
        "--status", action="store_true", help="print the current setup"
    )
    reading.add_argument(
        "--wait", action="store_true", help="block until the current setup ends"
    )
    reading.add_argument(
        "--timeout", type=float, help="with --wait: give up after this many seconds"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the command chosen by ``args`` and return the exit code."""
    layout = HomeLayout.create(args.home, args.install_dir)
    if (args.status or args.wait) and args.version is not None:
        flag = "--status" if args.status else "--wait"
        raise UsageError(
            f"{flag} reads the current setup and takes no VERSION, got {args.version!r}"
        )
    if args.status:
        return show_status(layout, as_json=args.json)
    if args.timeout is not None and not 0 <= args.timeout < math.inf:
        raise UsageError(
            f"invalid --timeout {args.timeout:g}: give a number of seconds, 0 or more"
        )
    if args.wait:
        return wait_for_setup(layout, timeout=args.timeout, as_json=args.json)
    if args.timeout is not None:
        raise UsageError("--timeout goes with --wait")

    options = _setup_options(args, layout)
    log_path = configure_run_logging(layout.logs_dir, "setup", verbose=args.verbose)
    logger.info("log file: %s", log_path)

    display = None if args.json else lambda: ProgressDisplay(layout.state_file)
    result = run_setup(options, display=display)

    _print_result(result, args.json, log_path)
    return result.exit_code


def _setup_options(args: argparse.Namespace, layout: HomeLayout) -> SetupOptions:
    if args.version is None and not (args.resume or args.skip_update):
        raise UsageError("missing VERSION: pass the release to install, e.g. 3.0.0")
    version = parse_version(args.version) if args.version is not None else None
    if args.skip_update and args.skip_verification:
        raise UsageError(
            "--skip-update and --skip-verification together leave nothing to do"
        )

    # An unusable URL is an input error: reject it before a setup is recorded.
    middleware_url = validate_base_url(
        resolve_middleware_url(args.middleware_url),
        allow_insecure_http=args.allow_insecure_http,
    )
    if not args.skip_verification:
        # The verification reads the port variables; a bad one fails here,
        # before the update changes anything.
        service_ports()

    return SetupOptions(
        layout=layout,
        version=version,
        middleware_url=middleware_url,
        repo=args.repo,
        allow_insecure_http=args.allow_insecure_http,
        yes=args.yes,
        allow_downgrade=args.allow_downgrade,
        resume=args.resume,
        skip_update=args.skip_update,
        skip_verification=args.skip_verification,
        isolated=args.isolated,
        installer=args.installer,
        index_url=args.index_url,
        find_links=args.find_links,
    )


def _print_result(result: SetupResult, as_json: bool, log_path: object) -> None:
    if as_json:
        document = {
            "setup_id": result.setup_id,
            "status": result.status.value,
            "exit_code": int(result.exit_code),
            "error_details": result.error_details,
            "phases": result.phases,
            "log_file": str(log_path) if log_path else None,
        }
        print(json.dumps(document, indent=2))
        return

    phases = ", ".join(f"{name} {status}" for name, status in result.phases.items())
    print(f"Setup {result.setup_id} {result.status.value}: {phases}.")
    if result.error_details:
        print(f"error: {result.error_details}", file=sys.stderr)
    if log_path:
        print(f"log: {log_path}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        logger.debug("setup failed", exc_info=True)
        return e.exit_code
    except KeyboardInterrupt:
        if args.status or args.wait:
            print(
                "error: interrupted while reading the setup; the setup itself goes "
                "on, see it with `setup_orchestrator.py --status`",
                file=sys.stderr,
            )
        else:
            print("error: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
