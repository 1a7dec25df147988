"""Run the benchmarks and write the results page.

Usage: ``python bench/run.py [--quick] [--only NAME ...] [--output FILE]``.
``docs/benchmarks.md`` describes every benchmark and its reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Run as a script, only bench/ is on the path; the toolkit lives at the root.
    sys.path.insert(0, str(ROOT))

from bench.machine import machine_facts  # noqa: E402
from bench.model import BenchContext, BenchResult  # noqa: E402
from bench.report import render_page, results_document, write_json, write_text  # noqa: E402

logger = logging.getLogger("bench")

# Benchmark name -> module, in the order they run.
BENCHMARKS = {
    "state": "bench.bench_state",
    "download": "bench.bench_download",
    "small_files": "bench.bench_small_files",
    "update": "bench.bench_update",
    "memory": "bench.bench_memory",
    "verify": "bench.bench_verify",
    "setup": "bench.bench_setup",
}

FULL_RUNS = 5
FULL_WARMUP = 1
FULL_OUTPUT = ROOT / "docs" / "benchmarks.md"
FULL_JSON = ROOT / "bench" / "results" / "latest.json"
QUICK_OUTPUT = ROOT / "bench" / "results" / "quick.md"
QUICK_JSON = ROOT / "bench" / "results" / "quick.json"
# Options whose values are paths of the machine that runs the benchmarks, and
# the placeholder the page shows instead.
PATH_OPTIONS = {"--workdir": "DIR", "--output": "FILE", "--json": "FILE"}


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Run the benchmarks, each against a reference measured in "
        "the same run, and write the results page.",
        epilog="Exit codes: 0 every benchmark ran (a missed goal fails nothing), "
        "1 a benchmark could not run, 2 invalid usage.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny data and one run without warm-up, to prove the scripts work; "
        f"writes {QUICK_OUTPUT.relative_to(ROOT)} unless --output is given",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only these benchmarks: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--runs",
        type=_positive,
        help=f"measured runs per figure (default: {FULL_RUNS}, 1 with --quick)",
    )
    parser.add_argument(
        "--warmup",
        type=_not_negative,
        help=f"warm-up runs before them (default: {FULL_WARMUP}, 0 with --quick)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"Markdown page to write (default: {FULL_OUTPUT.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help=f"raw results to write (default: {FULL_JSON.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="folder in which the temp data folder is made (default: the "
        "system temp folder)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log each run and each decision"
    )
    return parser


def _positive(text: str) -> int:
    value = _not_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _not_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from e
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """Return the Markdown page and the JSON file that a run writes.

    A quick run writes the published page only when ``--output`` names it.
    """
    if args.quick:
        return args.output or QUICK_OUTPUT, args.json or QUICK_JSON
    return args.output or FULL_OUTPUT, args.json or FULL_JSON


def run(args: argparse.Namespace, command: str) -> int:
    """Run the chosen benchmarks, write the page and the JSON, return the exit code."""
    names = args.only or list(BENCHMARKS)
    output, json_path = output_paths(args)
    if args.workdir is not None and not args.workdir.is_dir():
        print(
            f"error: --workdir must be an existing folder, got {str(args.workdir)!r}",
            file=sys.stderr,
        )
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="codemate-bench-", dir=args.workdir))
    default_warmup = 0 if args.quick else FULL_WARMUP
    ctx = BenchContext(
        quick=args.quick,
        runs=args.runs or (1 if args.quick else FULL_RUNS),
        warmup=default_warmup if args.warmup is None else args.warmup,
        workdir=workdir,
        shared=workdir / "shared",
        root=ROOT,
        python=sys.executable,
    )
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started_clock = time.perf_counter()
    try:
        facts = machine_facts(workdir, ROOT)
        results = [_run_one(name, ctx) for name in names]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    duration = time.perf_counter() - started_clock

    write_text(
        output,
        render_page(results, ctx, facts, command, started, duration, list(BENCHMARKS)),
    )
    write_json(
        json_path, results_document(results, ctx, facts, command, started, duration)
    )
    print(f"wrote {output} and {json_path}")

    failed = [result.name for result in results if result.error]
    if failed:
        print(
            f"error: these benchmarks could not run: {', '.join(failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_one(name: str, parent: BenchContext) -> BenchResult:
    workdir = parent.workdir / name
    workdir.mkdir()
    ctx = dataclasses.replace(parent, workdir=workdir)
    module = importlib.import_module(BENCHMARKS[name])
    # Write back what earlier benchmarks left dirty (gigabytes after the
    # update benchmark), so it does not slow the fsyncs measured next.
    os.sync()
    started = time.perf_counter()
    logger.info("running %s", name)
    try:
        result = module.run(ctx)
    except Exception as e:  # one broken benchmark must not lose the others' results
        logger.exception("benchmark %s failed", name)
        result = BenchResult(
            name=name, title=module.TITLE, error=f"{type(e).__name__}: {e}"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    _print_result(result, time.perf_counter() - started)
    return result


def _print_result(result: BenchResult, seconds: float) -> None:
    if result.error:
        print(f"{result.name}: did not run ({result.error})")
        return
    verdicts = "; ".join(
        f"{check.goal}: {check.value:.3g} {check.unit} "
        f"{'met' if check.met else 'missed'}"
        for check in result.checks
    )
    print(f"{result.name} ({seconds:.0f} s): {verdicts}")


def _without_paths(arguments: list[str]) -> list[str]:
    # The page shows the command, but not the folders of the machine it ran on.
    shown = []
    placeholder = None
    for argument in arguments:
        name, equals, _ = argument.partition("=")
        if placeholder is not None:
            shown.append(placeholder)
        elif name in PATH_OPTIONS and equals:
            shown.append(f"{name}={PATH_OPTIONS[name]}")
        else:
            shown.append(argument)
        placeholder = PATH_OPTIONS.get(name) if not equals else None
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run, and return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    command = " ".join(["python bench/run.py", *_without_paths(arguments)])
    # Measure the toolkit as it runs after its first run, with bytecode caches.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return run(args, command)


if __name__ == "__main__":
    sys.exit(main())
