"""One changed file in a 20,000-file, 1 GiB installation, against ``cp -a``.

Ours: a whole ``update.py`` run from version 1.0.0 to 1.0.1, which differ in
one file, on a home where 1.0.0 is installed. References: copying the
installation with ``cp -a``, and the same update of a 1,000-file installation
with files of the same size.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.data import MIB, publish, write_tree
from bench.model import BenchContext, BenchResult, Check, Row, Stats
from bench.processes import run_measured
from bench.servers import Middleware
from bench.timing import paired_ratio, repeat
from bench.toolkit import script_env, update_command

logger = logging.getLogger(__name__)

NAME = "update"
TITLE = "One changed file in a 20,000-file, 1 GiB installation"
LARGE_FILES = 20_000
SMALL_FILES = 1_000
QUICK_LARGE_FILES = 400
QUICK_SMALL_FILES = 20
TOTAL_BYTES = 1024 * MIB
QUICK_FILE_BYTES = 4096
OLD_VERSION = "1.0.0"
NEW_VERSION = "1.0.1"
MIN_SPEEDUP = 10.0
MAX_SCALING = 1.5


@dataclass
class Installation:
    """A home with ``OLD_VERSION`` or ``NEW_VERSION`` installed, and its middleware."""

    files: int
    home: Path
    server: Middleware


def run(ctx: BenchContext) -> BenchResult:
    """Measure one-file updates of a large and a small installation."""
    large_count = QUICK_LARGE_FILES if ctx.quick else LARGE_FILES
    small_count = QUICK_SMALL_FILES if ctx.quick else SMALL_FILES
    file_bytes = QUICK_FILE_BYTES if ctx.quick else TOTAL_BYTES // LARGE_FILES

    large_releases = _publish_pair(ctx.workdir / "large", large_count, file_bytes)
    small_releases = _publish_pair(ctx.workdir / "small", small_count, file_bytes)
    with (
        Middleware(large_releases, ctx.python, ctx.root) as large_server,
        Middleware(small_releases, ctx.python, ctx.root) as small_server,
    ):
        large = _install(ctx, large_count, ctx.workdir / "large" / "home", large_server)
        small = _install(ctx, small_count, ctx.workdir / "small" / "home", small_server)
        probe = _Probe(ctx, large, small)
        stats = repeat(probe.measure_once, ctx, NAME)
    return _result(stats, large_count, small_count, file_bytes)


def _publish_pair(folder: Path, count: int, file_bytes: int) -> Path:
    source = folder / "source"
    releases = folder / "releases"
    paths = write_tree(source, count, file_bytes)
    publish(source, OLD_VERSION, releases)

    changed = source / paths[len(paths) // 2]
    changed.write_bytes(random.Random(1).randbytes(file_bytes))
    publish(source, NEW_VERSION, releases)
    shutil.rmtree(source)
    return releases


def _install(
    ctx: BenchContext, files: int, home: Path, server: Middleware
) -> Installation:
    run_measured(update_command(ctx, OLD_VERSION, server.url, home), env=script_env())
    return Installation(files, home, server)


class _Probe:
    def __init__(
        self, ctx: BenchContext, large: Installation, small: Installation
    ) -> None:
        self.ctx = ctx
        self.large = large
        self.small = small
        self.copies = itertools.count(1)
        self.env = script_env()

    def measure_once(self) -> dict[str, float]:
        large, no_op = self._measure(self.large)
        small, small_no_op = self._measure(self.small)

        # Each copy stays until the benchmark ends. Creating a file on ext4
        # cost far more CPU time for a few minutes after many files were
        # deleted nearby (measured, see bench/analysis/small_files.md), so
        # deleting the last copy first would slow this one.
        copy_dir = self.ctx.workdir / f"copy-{next(self.copies)}"
        os.sync()
        copy = run_measured(["cp", "-a", self.large.home / "app", copy_dir])

        return {
            "copy": copy.seconds,
            "large": large,
            "small": small,
            "no_op": no_op,
            "small_no_op": small_no_op,
        }

    def _measure(self, installation: Installation) -> tuple[float, float]:
        """Return the times of the update and of the same run once it is done."""
        # Each timed update follows a run of its own home. Right after the copy,
        # fresh memory pages made the large update slower (scratch runs: a
        # median of 0.58 s, against 0.45 s right after a restore).
        self._restore(installation)
        os.sync()
        update = self._update(installation)
        no_op = self._no_op(installation)
        return update, no_op

    def _update(self, installation: Installation) -> float:
        command = update_command(
            self.ctx, NEW_VERSION, installation.server.url, installation.home
        )
        return run_measured(command, env=self.env).seconds

    def _no_op(self, installation: Installation) -> float:
        # The version is installed already: what a run costs with no change.
        return self._update(installation)

    def _restore(self, installation: Installation) -> None:
        command = update_command(
            self.ctx, OLD_VERSION, installation.server.url, installation.home
        )
        run_measured([*command, "--allow-downgrade"], env=self.env)
        _check_version(installation.home, OLD_VERSION)


def _check_version(home: Path, expected: str) -> None:
    found = (home / "version.txt").read_text().strip()
    if found.lstrip("v") != expected:
        raise RuntimeError(f"{home} must have {expected} installed, found {found!r}")


def _result(
    stats: dict[str, Stats], large_count: int, small_count: int, file_bytes: int
) -> BenchResult:
    speedup = paired_ratio(stats["copy"], stats["large"])
    scaling = paired_ratio(stats["large"], stats["small"])
    total_mib = large_count * file_bytes / MIB
    return BenchResult(
        name=NAME,
        title=TITLE,
        method=(
            f"Two homes have version {OLD_VERSION} installed: one of "
            f"{large_count} files ({total_mib:,.0f} MiB) and one of {small_count} "
            f"files, every file {file_bytes:,} bytes of random data, 100 per "
            f"folder. Version {NEW_VERSION} changes one file. Each run times a "
            f"whole `update.py {NEW_VERSION} --yes` on each home, from process "
            "start to exit, against the reference middleware on 127.0.0.1 (a "
            "child process). Before it, the old version is put back with "
            "`--allow-downgrade`, untimed, so each timed update follows a run "
            "of its own home. The reference is `cp -a` of the large "
            "installation's folder into a new folder of the same file system, "
            "after both updates; the copies are removed when the benchmark "
            "ends. `sync` runs before each timed command. The parts are the "
            "same updates run again once the new version is installed, so "
            "nothing changes; their difference is the cost of comparing the "
            "extra files."
        ),
        rows=[
            Row(f"ours: update of {large_count} files", stats["large"], "s"),
            Row(f"ours: update of {small_count} files", stats["small"], "s"),
            Row("cp -a of the installation", stats["copy"], "s", "reference"),
            Row("cp -a / ours (speedup)", speedup, "x", "ratio"),
            Row(
                f"ours: {large_count} files / {small_count} files",
                scaling,
                "x",
                "ratio",
            ),
            Row(
                f"part: update.py with nothing to change ({large_count} files)",
                stats["no_op"],
                "s",
                "part",
            ),
            Row(
                f"part: update.py with nothing to change ({small_count} files)",
                stats["small_no_op"],
                "s",
                "part",
            ),
        ],
        checks=[
            Check(
                "at least 10 times faster than cp -a", speedup.median, MIN_SPEEDUP, True
            ),
            Check(
                f"at most 1.5 times the update of {small_count} files",
                scaling.median,
                MAX_SCALING,
                False,
            ),
        ],
        params={
            "large_files": large_count,
            "small_files": small_count,
            "file_bytes": file_bytes,
        },
    )
