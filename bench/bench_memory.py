"""Peak memory while installing a 1 GiB file, against the file's size.

Ours: the peak resident memory of a fresh ``update.py`` install of a release
holding one 1 GiB file. Reference: the file size, which a client that reads
the whole body into memory would need at least.
"""

from __future__ import annotations

import logging
import shutil

from bench.data import MIB, LargeRelease, large_release
from bench.model import BenchContext, BenchResult, Check, Row, Stats
from bench.processes import ProcessRun, run_measured
from bench.servers import Middleware
from bench.timing import repeat
from bench.toolkit import script_env, update_command

logger = logging.getLogger(__name__)

NAME = "memory"
TITLE = "Peak memory while installing a 1 GiB file"
MAX_PEAK_MIB = 100.0
# Modules that update.py imports before any work: the floor of its memory.
IMPORTS = "import codemate_setup.updater, codemate_setup.state, requests"


def run(ctx: BenchContext) -> BenchResult:
    """Measure the peak resident memory of a large install."""
    release = large_release(ctx)
    home = ctx.workdir / "home"
    env = script_env()

    def measure_once() -> dict[str, float]:
        shutil.rmtree(home, ignore_errors=True)
        install = run_measured(
            update_command(ctx, release.version, server.url, home),
            env=env,
            sample_memory=True,
        )
        imports = run_measured(
            [ctx.python, "-c", IMPORTS], env=env, cwd=ctx.root, sample_memory=True
        )
        shutil.rmtree(home)
        return {
            "peak": _peak(install) / MIB,
            "wait4_peak": install.max_rss_bytes / MIB,
            "imports": _peak(imports) / MIB,
        }

    with Middleware(release.releases_dir, ctx.python, ctx.root) as server:
        stats = repeat(measure_once, ctx, NAME)
    return _result(stats, release)


def _peak(run: ProcessRun) -> int:
    return run.sampled_peak_bytes or run.max_rss_bytes


def _result(stats: dict[str, Stats], release: LargeRelease) -> BenchResult:
    size_mib = release.size / MIB
    fraction = Stats([value / size_mib for value in stats["peak"].values])
    return BenchResult(
        name=NAME,
        title=TITLE,
        method=(
            f"Each run installs a release of one {size_mib:g} MiB file into an "
            "empty home with `update.py VERSION --yes` from the reference "
            "middleware on 127.0.0.1, and reads the process's peak resident "
            "memory (`VmHWM` from `/proc/PID/status`, every 10 ms until it "
            "exits). The table also shows `ru_maxrss` from `wait4`. On Linux it "
            "includes the memory the child had before `exec`. A child started "
            "with `vfork` shares its parent's memory until then, so this figure "
            "is never below the benchmark runner's own peak. The reference "
            "is the file size. The import floor is the peak of a Python process "
            f"that only runs `{IMPORTS}`."
        ),
        rows=[
            Row("ours: peak resident memory", stats["peak"], "MiB"),
            Row("ours: ru_maxrss from wait4", stats["wait4_peak"], "MiB"),
            Row("part: import floor", stats["imports"], "MiB", "part"),
            Row(
                "file size",
                Stats([size_mib] * len(fraction.values)),
                "MiB",
                "reference",
            ),
            Row("peak / file size", fraction, "x", "ratio"),
        ],
        checks=[
            Check(
                "under 100 MiB resident",
                stats["peak"].median,
                MAX_PEAK_MIB,
                False,
                "MiB",
            )
        ],
        params={"file_bytes": release.size},
    )
