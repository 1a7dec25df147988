"""Command-line options shared by the scripts: where the home is, which middleware."""

from __future__ import annotations

import argparse

ArgumentContainer = argparse.ArgumentParser | argparse._ArgumentGroup


def add_home_arguments(parser: ArgumentContainer) -> None:
    """Add ``--home`` and ``--install-dir``."""
    parser.add_argument(
        "--home",
        help="CodeMate home folder (default: $CODEMATE_HOME, else ~/.codemate.test)",
    )
    parser.add_argument(
        "--install-dir", help="folder of the installed application (default: HOME/app)"
    )


def add_middleware_arguments(parser: ArgumentContainer) -> None:
    """Add ``--middleware-url``, ``--repo`` and ``--allow-insecure-http``."""
    parser.add_argument(
        "--middleware-url",
        help="middleware base URL (default: http://$UPDATER_SERVER_HOST:"
        "$UPDATER_SERVER_PORT, else http://localhost:8000)",
    )
    parser.add_argument(
        "--repo",
        metavar="OWNER/NAME",
        help="repository passed to the middleware as ?repo=",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http to a middleware that is not on loopback",
    )
