"""5,000 files of 4 KiB: a fresh install against one-at-a-time downloads.

Ours: a fresh ``update.py`` install of a release of 5,000 files of 4 KiB, which
downloads them in parallel over pooled connections. Reference: the same files
downloaded one after another over one keep-alive connection by a plain
``requests.Session`` loop (``bench/sequential_fetch.py``), with no hashing.
"""

from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path

import psutil

from bench.data import publish, write_tree
from bench.model import BenchContext, BenchResult, Check, Row, Stats
from bench.processes import run_measured
from bench.servers import Middleware
from bench.timing import paired_ratio, per_run, repeat
from bench.toolkit import script_env, update_command

logger = logging.getLogger(__name__)

NAME = "small_files"
TITLE = "5,000 files of 4 KiB: fresh install"
FILE_COUNT = 5000
QUICK_FILE_COUNT = 200
FILE_BYTES = 4096
VERSION = "1.0.0"
MIN_SPEEDUP = 4.0

FETCHER = Path(__file__).with_name("sequential_fetch.py")


def run(ctx: BenchContext) -> BenchResult:
    """Measure a parallel fresh install against sequential downloads."""
    count = QUICK_FILE_COUNT if ctx.quick else FILE_COUNT
    source = ctx.workdir / "source"
    paths = write_tree(source, count, FILE_BYTES)
    releases = ctx.workdir / "releases"
    publish(source, VERSION, releases)
    paths_file = ctx.workdir / "paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")

    with Middleware(releases, ctx.python, ctx.root) as server:
        probe = _Probe(ctx, server, paths_file, count)
        stats = repeat(probe.measure_once, ctx, NAME)
    return _result(stats, count)


class _Probe:
    def __init__(
        self, ctx: BenchContext, server: Middleware, paths_file: Path, count: int
    ) -> None:
        self.ctx = ctx
        self.server = server
        self.server_process = psutil.Process(server.pid)
        self.paths_file = paths_file
        self.count = count
        self.repetitions = itertools.count(1)

    def measure_once(self) -> dict[str, float]:
        # Each repetition writes into new folders, and the files stay until the
        # benchmark ends. Creating a file on ext4 cost far more CPU time for a
        # few minutes after many files were deleted nearby (measured, see
        # bench/analysis/small_files.md), so deleting the last repetition's
        # 5,000 files first would charge that cost to each side.
        folder = self.ctx.workdir / f"repetition-{next(self.repetitions)}"
        fetched = folder / "fetched"
        curled = folder / "curled"
        home = folder / "home"
        curl_config = _curl_config(
            folder / "curl.config", self.server.url, self.paths_file, curled
        )

        server_before = self._server_cpu()
        reference = run_measured(
            [
                sys.executable,
                FETCHER,
                self.server.url,
                VERSION,
                self.paths_file,
                fetched,
            ]
        )
        server_reference = self._server_cpu() - server_before
        _check_count(fetched, self.count)

        server_before = self._server_cpu()
        curl = run_measured(["curl", "--silent", "--fail", "--config", curl_config])
        server_curl = self._server_cpu() - server_before
        _check_count(curled, self.count)

        server_before = self._server_cpu()
        ours = run_measured(
            update_command(self.ctx, VERSION, self.server.url, home),
            env=script_env(),
        )
        server_ours = self._server_cpu() - server_before
        _check_count(home / "app", self.count)

        return {
            "ours": ours.seconds,
            "ours_cpu": ours.cpu_seconds,
            "ours_server_cpu": server_ours,
            "reference": reference.seconds,
            "reference_cpu": reference.cpu_seconds,
            "reference_server_cpu": server_reference,
            "curl": curl.seconds,
            "curl_server_cpu": server_curl,
        }

    def _server_cpu(self) -> float:
        times = self.server_process.cpu_times()
        return times.user + times.system


def _curl_config(config: Path, base_url: str, paths_file: Path, out_dir: Path) -> Path:
    # One curl process fetches every URL of its config over one connection,
    # one after another.
    lines = []
    for path in paths_file.read_text().split():
        lines.append(f'url = "{base_url}/download/v{VERSION}/{path}"')
        lines.append(f'output = "{out_dir / path}"')
    lines.append("create-dirs")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("\n".join(lines) + "\n")
    return config


def _check_count(folder: Path, expected: int) -> None:
    found = sum(1 for path in folder.rglob("module*.py") if path.is_file())
    if found != expected:
        raise RuntimeError(f"{folder} must hold {expected} files, found {found}")


def _per_file_ms(seconds: Stats, count: int) -> Stats:
    return Stats([value * 1000 / count for value in seconds.values])


def _result(stats: dict[str, Stats], count: int) -> BenchResult:
    speedup = paired_ratio(stats["reference"], stats["ours"])
    result = BenchResult(
        name=NAME,
        title=TITLE,
        method=(
            f"Each run installs a release of {count} files of "
            f"{FILE_BYTES // 1024} KiB (100 per folder) into an empty home with "
            "`update.py VERSION --yes`, from the reference middleware on "
            "127.0.0.1 (a child process), from process start to exit. The "
            "reference downloads the same files one after another over one "
            "keep-alive connection with a `requests.Session` loop "
            "(`bench/sequential_fetch.py`, also a child process) and writes "
            "each to a file, without hashing. The server's CPU time is read "
            "from its process for each side. The part `curl --config` fetches "
            "the same URLs over one connection, one after another, so its time "
            "is mostly the server's own cost per request. Each repetition writes "
            "into new folders, and all of them are removed when the benchmark "
            "ends, so no side creates its files right after 5,000 others were "
            "deleted."
        ),
        rows=[
            Row("ours: wall time", stats["ours"], "s"),
            Row("ours: wall time per file", _per_file_ms(stats["ours"], count), "ms"),
            Row("ours: client CPU time", stats["ours_cpu"], "s"),
            Row("ours: server CPU time", stats["ours_server_cpu"], "s"),
            Row("sequential: wall time", stats["reference"], "s", "reference"),
            Row(
                "sequential: wall time per file",
                _per_file_ms(stats["reference"], count),
                "ms",
                "reference",
            ),
            Row(
                "sequential: client CPU time",
                stats["reference_cpu"],
                "s",
                "reference",
            ),
            Row(
                "sequential: server CPU time",
                stats["reference_server_cpu"],
                "s",
                "reference",
            ),
            Row("sequential / ours (speedup)", speedup, "x", "ratio"),
            Row("part: curl, one connection, sequential", stats["curl"], "s", "part"),
            Row(
                "part: server CPU time per request",
                per_run(
                    lambda seconds: seconds * 1000 / count, stats["curl_server_cpu"]
                ),
                "ms",
                "part",
            ),
        ],
        checks=[Check("at least 4 times faster", speedup.median, MIN_SPEEDUP, True)],
        params={"files": count, "file_bytes": FILE_BYTES},
    )
    return result
