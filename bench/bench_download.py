"""One 1 GiB file: download, hash and install, against ``curl -o``.

Ours: a fresh ``update.py`` install of a release holding one 1 GiB file,
from the reference middleware on loopback: it downloads, hashes, verifies
and installs the file. Reference: ``curl -o`` of the same URL, which only
transfers and writes it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import psutil

from bench.data import MIB, LargeRelease, large_release
from bench.model import BenchContext, BenchResult, Check, Row, Stats
from bench.page_cache import LARGE_PIECE, SMALL_PIECE, write_after
from bench.processes import run_measured
from bench.servers import Middleware
from bench.timing import paired_ratio, repeat, timed
from bench.toolkit import script_env, update_command
from codemate_setup.filestore import hash_file

logger = logging.getLogger(__name__)

NAME = "download"
TITLE = "One 1 GiB file: download, hash and install"
MIN_THROUGHPUT_RATIO = 0.9


def run(ctx: BenchContext) -> BenchResult:
    """Measure a fresh install of one large file against curl."""
    release = large_release(ctx)
    with Middleware(release.releases_dir, ctx.python, ctx.root) as server:
        probe = _Probe(ctx, server, release)
        try:
            stats = repeat(probe.measure_once, ctx, NAME)
        finally:
            probe.remove_outputs()
    return _result(stats, release)


def download_url(base_url: str, release: LargeRelease) -> str:
    """Return the middleware URL of the release's large file."""
    return f"{base_url}/download/v{release.version}/{release.path}"


class _Probe:
    def __init__(
        self, ctx: BenchContext, server: Middleware, release: LargeRelease
    ) -> None:
        self.ctx = ctx
        self.url = server.url
        self.server = psutil.Process(server.pid)
        self.server_cpu = 0.0
        self.release = release
        self.curl_output = ctx.workdir / "curl.bin"
        self.home = ctx.workdir / "home"

    def measure_once(self) -> dict[str, float]:
        # Each side deletes its own file of the previous run just before it
        # runs. Curl writes at most 16 KiB at a time and we write 1 MiB, and
        # on this virtual machine a 1 MiB writer was several times slower right
        # after a 16 KiB writer's file was deleted (bench/analysis/download.md).
        self.curl_output.unlink(missing_ok=True)
        os.sync()
        self._server_cpu()
        curl = run_measured(
            [
                "curl",
                "--silent",
                "--show-error",
                "--fail",
                "--output",
                self.curl_output,
                download_url(self.url, self.release),
            ]
        )
        _check_size(self.curl_output, self.release.size)
        curl_server_cpu = self._server_cpu()

        shutil.rmtree(self.home, ignore_errors=True)
        os.sync()
        command = update_command(self.ctx, self.release.version, self.url, self.home)
        ours = run_measured(command, env=script_env())
        ours_server_cpu = self._server_cpu()
        installed = self.home / "app" / self.release.path
        _check_size(installed, self.release.size)

        # The same command again finds the version installed: its fixed cost.
        again = run_measured(command, env=script_env())
        hashing = timed(lambda: hash_file(installed))

        folder = self.ctx.workdir
        size = self.release.size
        after_small = write_after(folder, size, SMALL_PIECE, LARGE_PIECE)
        after_large = write_after(folder, size, LARGE_PIECE, LARGE_PIECE)

        return {
            "curl": curl.seconds,
            "curl_cpu": curl.cpu_seconds,
            "curl_server_cpu": curl_server_cpu,
            "ours": ours.seconds,
            "ours_cpu": ours.cpu_seconds,
            "ours_server_cpu": ours_server_cpu,
            "no_op": again.seconds,
            "hash": hashing,
            "write_after_small": after_small,
            "write_after_large": after_large,
        }

    def remove_outputs(self) -> None:
        """Delete the last run's installed home and curl's file."""
        shutil.rmtree(self.home, ignore_errors=True)
        self.curl_output.unlink(missing_ok=True)

    def _server_cpu(self) -> float:
        # CPU time the server spent since the previous call.
        times = self.server.cpu_times()
        total = times.user + times.system
        spent = total - self.server_cpu
        self.server_cpu = total
        return spent


def _check_size(path: Path, expected: int) -> None:
    size = path.stat().st_size
    if size != expected:
        raise RuntimeError(f"{path} must hold {expected} bytes, found {size}")


def _throughput(seconds: Stats, size: int) -> Stats:
    return Stats([size / MIB / value for value in seconds.values])


def _result(stats: dict[str, Stats], release: LargeRelease) -> BenchResult:
    ratio = paired_ratio(stats["curl"], stats["ours"])
    size_mib = release.size / MIB
    result = BenchResult(
        name=NAME,
        title=TITLE,
        method=(
            f"Each run installs a release of one {size_mib:g} MiB file of random "
            "bytes into an empty home with `update.py VERSION --yes`, from the "
            "reference middleware on 127.0.0.1 (a child process). It is timed "
            "from process start to exit: download, SHA-256, verification, "
            "install and the state file. The reference is "
            "`curl --silent --fail --output FILE URL` of the same file from the "
            "same server, which only transfers "
            "and writes it. The release file is in the page cache for both. "
            "Each side deletes its own output of the previous run just before "
            "it runs, and `sync` runs before each timed command. The parts show "
            "the fixed cost of a run (the same command once the version is "
            "installed) and the cost of one SHA-256 pass (`filestore.hash_file`) "
            "over the file. The `dd` rows show how fast this machine writes a "
            "file of the same size into the page cache in 1 MiB pieces, about "
            "what our download writes at a time. They follow the deletion of a "
            "file written in 16 KiB pieces, at most what curl writes at a time, "
            "or in 1 MiB pieces (`bench/page_cache.py`)."
        ),
        rows=[
            Row("ours: wall time", stats["ours"], "s"),
            Row("ours: throughput", _throughput(stats["ours"], release.size), "MiB/s"),
            Row("ours: client CPU time", stats["ours_cpu"], "s"),
            Row("ours: server CPU time", stats["ours_server_cpu"], "s"),
            Row("curl: wall time", stats["curl"], "s", "reference"),
            Row(
                "curl: throughput",
                _throughput(stats["curl"], release.size),
                "MiB/s",
                "reference",
            ),
            Row("curl: client CPU time", stats["curl_cpu"], "s", "reference"),
            Row("curl: server CPU time", stats["curl_server_cpu"], "s", "reference"),
            Row("ours / curl (throughput)", ratio, "x", "ratio"),
            Row(
                "part: update.py with the version installed",
                stats["no_op"],
                "s",
                "part",
            ),
            Row(
                "part: SHA-256 of the file from the page cache",
                stats["hash"],
                "s",
                "part",
            ),
            Row(
                "part: dd in 1 MiB pieces, after a file written in 16 KiB pieces",
                stats["write_after_small"],
                "s",
                "part",
            ),
            Row(
                "part: dd in 1 MiB pieces, after a file written in 1 MiB pieces",
                stats["write_after_large"],
                "s",
                "part",
            ),
        ],
        checks=[
            Check(
                "at least 0.9 of curl's throughput",
                ratio.median,
                MIN_THROUGHPUT_RATIO,
                True,
            )
        ],
        params={"file_bytes": release.size},
    )
    return result
