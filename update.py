"""Install, update or roll back the CodeMate codebase from the middleware.

Usage::

    python update.py VERSION [--yes] [--allow-downgrade] [--json]
    python update.py --list | --check | --list-backups | --recover
    python update.py --rollback [VERSION]

Common options: ``--middleware-url URL``, ``--home DIR``, ``--install-dir DIR``,
``--repo OWNER/NAME``, ``--allow-insecure-http``. When ``CODEMATE_SETUP_ID``
is set, progress goes into that setup (started by the orchestrator) instead
of a setup of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from codemate_setup.startup import interrupt_exits_quietly

with interrupt_exits_quietly(__name__ == "__main__"):
    from codemate_setup.backups import list_backups
    from codemate_setup.cli import add_home_arguments, add_middleware_arguments
    from codemate_setup.client import MiddlewareClient
    from codemate_setup.config import HomeLayout, RunOptions, resolve_middleware_url
    from codemate_setup.errors import (
        ExitCode,
        SetupCancelledError,
        SetupError,
        UsageError,
    )
    from codemate_setup.homefiles import read_installed_version, recover_and_report
    from codemate_setup.logs import configure_run_logging
    from codemate_setup.orchestrator.signals import (
        CancelToken,
        cancel_on_signals,
        cancel_when_parent_exits,
        watched_parent,
    )
    from codemate_setup.resolve import release_versions
    from codemate_setup.rollback import run_rollback
    from codemate_setup.setuplock import hold_setup_lock
    from codemate_setup.state import Phase, SetupTracker
    from codemate_setup.steps import StepReporter, run_reported_phase
    from codemate_setup.update_result import UpdateResult
    from codemate_setup.updater import run_update
    from codemate_setup.versions import parse_version

logger = logging.getLogger("update")

SETUP_ID_VARIABLE = "CODEMATE_SETUP_ID"
_PREVIOUS = "previous"
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")

RECOVER_STEPS = ("Recovering interrupted update",)


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="update.py",
        description="Install or update the CodeMate codebase from the middleware. "
        "Every update is a transaction: it completes, or the previous version "
        "stays installed.",
        epilog="Exit codes: 0 done (also when nothing had to change), 1 the "
        "operation failed and the previous version is intact, 2 invalid usage "
        "or input, 3 another setup is running in this home, 130 interrupted.",
    )
    parser.add_argument(
        "version", nargs="?", help="version to install, such as 3.0.0 or v3.0.0"
    )

    actions = parser.add_mutually_exclusive_group()
    actions.add_argument(
        "--list",
        action="store_true",
        help="list the releases on the middleware, marking the installed one",
    )
    actions.add_argument(
        "--check",
        action="store_true",
        help="tell whether a newer release is available (exit code 0 either way)",
    )
    actions.add_argument(
        "--rollback",
        nargs="?",
        const=_PREVIOUS,
        metavar="VERSION",
        help="restore VERSION from the backups; without VERSION, undo the most "
        "recent update or rollback",
    )
    actions.add_argument(
        "--list-backups",
        action="store_true",
        help="list the backups that --rollback can restore",
    )
    actions.add_argument(
        "--recover",
        action="store_true",
        help="finish or roll back an interrupted update, then exit",
    )

    add_middleware_arguments(parser)
    add_home_arguments(parser)
    parser.add_argument(
        "--yes", "-y", action="store_true", help="confirm a major update without asking"
    )
    parser.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="install VERSION from the middleware even if it is older than the "
        "installed version",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as a JSON document"
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show progress logs on stderr"
    )
    return parser


def validate_arguments(args: argparse.Namespace) -> None:
    """Check the arguments before anything touches the disk or the network.

    Raises:
        UsageError: Naming the invalid argument and the expected form.
    """
    other_action = args.list or args.check or args.list_backups or args.recover
    if args.rollback is not None and args.version is not None:
        raise UsageError(
            "pass the version to restore after --rollback, as in "
            "update.py --rollback 2.9.0"
        )
    if other_action and args.version is not None:
        flag = _chosen_action_flag(args)
        raise UsageError(
            f"{flag} takes no VERSION, got {args.version!r}; run update.py {flag} "
            "alone, or update.py VERSION to install a version"
        )
    if not other_action and args.rollback is None and args.version is None:
        raise UsageError(
            "missing VERSION: run update.py VERSION, or update.py --list to see "
            "the available versions"
        )

    if args.version is not None:
        parse_version(args.version)
    if args.rollback not in (None, _PREVIOUS):
        parse_version(args.rollback)
    if args.repo is not None and not _REPO.fullmatch(args.repo):
        raise UsageError(f"invalid --repo {args.repo!r}: expected OWNER/NAME")


def _chosen_action_flag(args: argparse.Namespace) -> str:
    flags = {
        "--list": args.list,
        "--check": args.check,
        "--list-backups": args.list_backups,
        "--recover": args.recover,
    }
    return next(flag for flag, chosen in flags.items() if chosen)


def run(args: argparse.Namespace) -> int:
    """Run the action chosen by ``args`` and return the exit code.

    Raises:
        SetupError: For every expected failure; ``main`` reports it.
    """
    validate_arguments(args)
    layout = HomeLayout.create(args.home, args.install_dir)
    configure_run_logging(layout.logs_dir, "update", verbose=args.verbose)
    options = RunOptions(
        layout=layout,
        middleware_url=resolve_middleware_url(args.middleware_url),
        repo=args.repo,
        allow_insecure_http=args.allow_insecure_http,
    )

    if args.list:
        return _print(args, *_list_releases(options))
    if args.check:
        return _print(args, *_check(options))
    if args.list_backups:
        return _print(args, *_list_backups(layout))
    return _change_install(args, options)


def _change_install(args: argparse.Namespace, options: RunOptions) -> int:
    setup_id = os.environ.get(SETUP_ID_VARIABLE)
    own_setup = not setup_id
    if args.recover and not options.layout.journal_file.exists():
        return _print(args, {"recovery": None}, "No interrupted update was found.")

    lock = hold_setup_lock(options.layout) if own_setup else contextlib.nullcontext()
    with (
        lock,
        cancel_on_signals(CancelToken()) as token,
        cancel_when_parent_exits(token, watched_parent() if setup_id else None),
    ):
        tracker = SetupTracker(options.layout.state_file)
        if setup_id:
            tracker.join_setup(setup_id)
        try:
            on_step = None if args.json else _print_step
            if args.recover:
                return _recover(args, options, tracker, own_setup)
            if args.rollback is not None:
                version = None if args.rollback == _PREVIOUS else args.rollback
                result = run_rollback(
                    options,
                    version,
                    tracker=tracker,
                    own_setup=own_setup,
                    cancel=token.event,
                    on_step=on_step,
                )
            else:
                result = run_update(
                    options,
                    args.version,
                    tracker=tracker,
                    own_setup=own_setup,
                    yes=args.yes,
                    cancel=token.event,
                    allow_downgrade=args.allow_downgrade,
                    on_step=on_step,
                )
        finally:
            tracker.close()

    return _print(args, result.to_document(), _describe_result(result))


def _recover(
    args: argparse.Namespace,
    options: RunOptions,
    tracker: SetupTracker,
    own_setup: bool,
) -> int:
    reporter = StepReporter(tracker, Phase.CODEBASE_UPDATE, RECOVER_STEPS)

    def work() -> Any:
        with reporter.step(1):
            return recover_and_report(
                options.layout, options.limits.keep_backups, reporter
            )

    outcome = run_reported_phase(reporter, own_setup, None, work)
    if outcome is None:
        return _print(args, {"recovery": None}, "No interrupted update was found.")
    return _print(args, {"recovery": outcome.to_document()}, outcome.describe() + ".")


def _list_releases(options: RunOptions) -> tuple[Any, str]:
    installed = read_installed_version(options.layout)
    with _client(options) as client:
        entries = client.list_releases()
    versions = release_versions(entries)

    document = {
        "installed": str(installed) if installed else None,
        "releases": [
            {"version": str(v), "installed": v == installed} for v in versions
        ],
    }
    lines = [f"{'*' if v == installed else ' '} {v}" for v in versions]
    if not lines:
        lines = ["The middleware offers no releases."]
    elif installed is not None and installed not in versions:
        lines.append(f"(installed: {installed}, not offered by the middleware)")
    return document, "\n".join(lines)


def _check(options: RunOptions) -> tuple[Any, str]:
    installed = read_installed_version(options.layout)
    with _client(options) as client:
        versions = release_versions(client.list_releases())
    latest = versions[-1] if versions else None

    available = latest is not None and (installed is None or latest > installed)
    document = {
        "installed": str(installed) if installed else None,
        "latest": str(latest) if latest else None,
        "update_available": available,
    }
    if latest is None:
        text = "The middleware offers no releases."
    elif installed is None:
        text = f"CodeMate is not installed; the latest release is {latest}."
    elif available:
        text = f"An update is available: {installed} -> {latest}."
    else:
        text = f"CodeMate {installed} is up to date (latest release: {latest})."
    return document, text


def _list_backups(layout: HomeLayout) -> tuple[Any, str]:
    records = list_backups(layout.backups_dir)
    document = [
        {
            "name": record.name,
            "kind": record.kind.value,
            "restores": record.from_version,
            "replaced_by": record.to_version,
            "created_at": record.created_at,
            "files": len(record.stored),
        }
        for record in records
    ]
    if not records:
        return document, f"No backups in {layout.backups_dir}."

    lines = [
        f"{record.name}: restores {record.from_version or 'nothing'} "
        f"(replaced by the {record.kind.value} to {record.to_version}), "
        f"{len(record.stored)} files"
        for record in records
    ]
    return document, "\n".join(lines)


def _client(options: RunOptions) -> MiddlewareClient:
    return MiddlewareClient(
        options.middleware_url,
        repo=options.repo,
        limits=options.limits,
        allow_insecure_http=options.allow_insecure_http,
    )


def _print_step(number: int, total: int, name: str) -> None:
    print(f"[{number}/{total}] {name}", flush=True)


def _describe_result(result: UpdateResult) -> str:
    lines = []
    if result.recovery:
        lines.append(f"Recovered: {result.recovery['message']}.")
    lines += [f"Fallback: {message}." for message in result.fallbacks]
    lines += [
        f"Warning: {message}."
        for message in result.warnings
        if not result.recovery or message != result.recovery["message"]
    ]
    lines.append(result.message + ".")
    return "\n".join(lines)


def _print(args: argparse.Namespace, document: Any, text: str) -> int:
    if args.json:
        if isinstance(document, dict):
            document = {"status": "completed", "exit_code": 0, **document}
        print(json.dumps(document, indent=2))
    else:
        print(text)
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SetupError as e:
        logger.debug("update.py failed", exc_info=True)
        _print_error(args, e)
        return e.exit_code
    except KeyboardInterrupt:
        _print_error(args, SetupCancelledError("interrupted by the user"))
        return ExitCode.INTERRUPTED


def _print_error(args: argparse.Namespace, error: SetupError) -> None:
    if args.json:
        status = "cancelled" if isinstance(error, SetupCancelledError) else "failed"
        document = {
            "status": status,
            "exit_code": int(error.exit_code),
            "error": str(error),
        }
        print(json.dumps(document, indent=2))
    else:
        print(f"error: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
