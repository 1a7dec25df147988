"""Command line of the reference middleware: ``python -m codemate_setup.middleware``.

The first line written to standard output is the base URL, so a parent process
started with ``--port 0`` can read the chosen port from it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from codemate_setup.errors import ExitCode, SetupError, UsageError
from codemate_setup.middleware.faults import FaultConfig
from codemate_setup.middleware.releases import ReleaseStore
from codemate_setup.middleware.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    start_middleware,
)

logger = logging.getLogger("codemate_setup.middleware")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser, fault flags included."""
    parser = argparse.ArgumentParser(
        prog="python -m codemate_setup.middleware",
        description="Serve a folder of published CodeMate releases over HTTP.",
    )
    parser.add_argument("releases_dir", metavar="RELEASES_DIR")
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default: {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on, where 0 picks a free one (default: {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--legacy",
        action="store_true",
        help="serve manifests without the files listing and hashes",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="log warnings only, not every request"
    )
    _add_fault_flags(parser.add_argument_group("fault injection (for tests)"))
    return parser


def _add_fault_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--fault-drop-after",
        type=int,
        metavar="BYTES",
        help="close download connections after this many body bytes",
    )
    group.add_argument(
        "--fault-status",
        type=int,
        metavar="STATUS",
        help="respond to matching requests with this status, such as 500, 503 or 429",
    )
    group.add_argument(
        "--fault-status-count",
        type=int,
        default=1,
        metavar="K",
        help="how many matching requests get --fault-status (default: 1)",
    )
    group.add_argument(
        "--fault-retry-after",
        type=float,
        metavar="SECONDS",
        help="Retry-After value sent with --fault-status",
    )
    group.add_argument(
        "--fault-corrupt",
        action="store_true",
        help="send download bodies with every byte inverted",
    )
    group.add_argument(
        "--fault-wrong-length",
        type=int,
        metavar="DELTA",
        help="declare Content-Length as the real length plus DELTA bytes",
    )
    group.add_argument(
        "--fault-rate",
        type=int,
        metavar="BYTES_PER_SECOND",
        help="throttle download bodies to this rate",
    )
    group.add_argument(
        "--fault-stall-after",
        type=int,
        metavar="BYTES",
        help="pause download bodies after this many bytes",
    )
    group.add_argument(
        "--fault-stall-seconds",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="length of the pause of --fault-stall-after (default: 0)",
    )
    group.add_argument(
        "--fault-count",
        type=int,
        metavar="K",
        help="apply the body faults to the first K matching downloads only",
    )
    group.add_argument(
        "--fault-path",
        metavar="GLOB",
        help="apply faults only to downloads whose release path matches GLOB",
    )


def faults_from_args(args: argparse.Namespace) -> FaultConfig:
    """Build the fault configuration from parsed flags.

    Raises:
        ValueError: If a flag value is out of range.
    """
    return FaultConfig(
        drop_after_bytes=args.fault_drop_after,
        error_status=args.fault_status,
        error_count=args.fault_status_count,
        retry_after=args.fault_retry_after,
        corrupt_bytes=args.fault_corrupt,
        wrong_length=args.fault_wrong_length,
        bytes_per_second=args.fault_rate,
        stall_after_bytes=args.fault_stall_after,
        stall_seconds=args.fault_stall_seconds,
        fault_count=args.fault_count,
        path_glob=args.fault_path,
    )


def run(args: argparse.Namespace) -> ExitCode:
    """Serve until SIGINT or SIGTERM arrives.

    Returns:
        ``ExitCode.OK`` after a clean stop.

    Raises:
        SetupError: If the folder is missing or the address cannot be bound.
    """
    try:
        faults = faults_from_args(args)
    except ValueError as e:
        raise UsageError(f"invalid fault flag: {e}") from e
    faults = faults if faults != FaultConfig() else None

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    handle = start_middleware(
        args.releases_dir, args.host, args.port, args.legacy, faults
    )
    _warn_if_empty(Path(args.releases_dir))
    print(handle.url, flush=True)
    try:
        # A timed wait lets the main thread run the signal handlers.
        while not stop_requested.wait(0.5):
            pass
    finally:
        handle.stop()
    return ExitCode.OK


def _warn_if_empty(releases_dir: Path) -> None:
    # A folder of release sources (not published) serves no release, which a
    # client reports only as an empty list.
    if ReleaseStore(releases_dir).list_releases():
        return
    logger.warning(
        "no published release in %s: publish one into it with python -m "
        "codemate_setup.publish SOURCE_DIR --version VERSION --to %s",
        releases_dir,
        releases_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, serve, and return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )

    try:
        return int(run(args))
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        logger.debug("middleware failed", exc_info=True)
        return int(e.exit_code)


if __name__ == "__main__":
    sys.exit(main())
