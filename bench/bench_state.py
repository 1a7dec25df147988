"""State update latency and throughput with 2 readers polling the file.

Ours: one ``SetupTracker.set_phase_info`` call, which takes the file lock,
reads the document (parsing and validating it unless it is the tracker's own
last write), writes a temp file, fsyncs it, renames it over the state file and
fsyncs the folder. Reference: serializing the same
document, writing it to a temp file and renaming that over the state file,
with no lock and no fsync. Both run while 2 child processes poll the file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.model import BenchContext, BenchResult, Check, Row, Stats
from bench.timing import paired_ratio, percentile, repeat
from codemate_setup.fsutil import atomic_write_bytes, fsync_dir
from codemate_setup.state import Phase, SetupTracker, StateStore
from codemate_setup.state.lockfile import StateLock

logger = logging.getLogger(__name__)

NAME = "state"
TITLE = "State update with 2 readers polling"

UPDATES_PER_RUN = 1000
QUICK_UPDATES_PER_RUN = 50
READERS = 2
# A reader sleeps this long between reads: far faster than a GUI polls.
READER_INTERVAL_SECONDS = 0.001
LOCK_TIMEOUT_SECONDS = 5.0
MAX_RATIO = 3.0
MAX_MEDIAN_MS = 1.0
# Completed steps written before measuring, so the document has a real size.
PREPARED_STEPS = 8

READER_SCRIPT = Path(__file__).with_name("readers.py")
PHASE = Phase.CODEBASE_UPDATE


def run(ctx: BenchContext) -> BenchResult:
    """Measure locked, fsynced updates against a plain write and replace."""
    updates = QUICK_UPDATES_PER_RUN if ctx.quick else UPDATES_PER_RUN
    state_file = ctx.workdir / "home" / "setup_state.json"
    tracker = _prepared_tracker(state_file)
    try:
        with Readers(state_file, ctx.workdir / "stop-readers") as readers:
            probe = _Probe(tracker, state_file, updates)
            stats = repeat(probe.measure_once, ctx, NAME)
    finally:
        tracker.finish_setup("completed")
        tracker.close()

    return _result(stats, readers.counts, updates)


def _prepared_tracker(state_file: Path) -> SetupTracker:
    tracker = SetupTracker(state_file)
    tracker.start_setup("3.0.0")
    tracker.start_phase(PHASE, PREPARED_STEPS + 2)
    for index in range(PREPARED_STEPS):
        tracker.begin_step(PHASE, f"Benchmark step {index + 1}")
        tracker.complete_step(PHASE, f"Benchmark step {index + 1}")
    return tracker


class _Probe:
    """The measured operations of one repetition, on one state file."""

    def __init__(self, tracker: SetupTracker, state_file: Path, updates: int) -> None:
        self.tracker = tracker
        self.state_file = state_file
        self.updates = updates
        self.fast_store = StateStore(state_file, durable=False)
        self.reader_store = StateStore(state_file)
        self.lock = StateLock(state_file.with_suffix(".lock"))
        # Not the writers' own temp name, which only the lock holder may use.
        self.temp_file = state_file.with_name(f"{state_file.name}.plain-temp")
        self.probe_file = state_file.with_name("fsync-probe.json")

    def measure_once(self) -> dict[str, float]:
        document = self.reader_store.read()
        assert document is not None

        ours = self._latencies(self._tracker_update)
        reference = self._latencies(lambda i: self._plain_replace(document, i))
        fsynced = self._latencies(lambda i: self._probe_write(document, i, True))
        unsynced = self._latencies(lambda i: self._probe_write(document, i, False))
        locked_unsynced = self._latencies(self._unsynced_transaction)
        lock_only = self._latencies(lambda i: self._lock_cycle())
        floor = self._latencies(self._minimal_update)
        read_only = self._latencies(lambda i: self.reader_store.read())

        figures = _summary("ours", ours) | _summary("reference", reference)
        figures["fsyncs"] = _median(fsynced) - _median(unsynced)
        figures["lock"] = _median(lock_only)
        figures["read"] = _median(read_only)
        figures["locked_unsynced"] = _median(locked_unsynced)
        figures["floor"] = _median(floor)
        return figures

    def _latencies(self, update: Callable[[int], object]) -> list[float]:
        latencies = []
        for index in range(self.updates):
            started = time.perf_counter()
            update(index)
            latencies.append(time.perf_counter() - started)
        return latencies

    def _tracker_update(self, index: int) -> None:
        self.tracker.set_phase_info(PHASE, "bench_counter", index)

    def _plain_replace(self, document: dict[str, Any], index: int) -> None:
        document["phases"][PHASE.value]["bench_counter"] = index
        data = json.dumps(document, ensure_ascii=False).encode("utf-8")
        with open(self.temp_file, "wb") as handle:
            handle.write(data + b"\n")
        os.replace(self.temp_file, self.state_file)

    def _probe_write(self, document: dict[str, Any], index: int, durable: bool) -> None:
        document["phases"][PHASE.value]["bench_counter"] = index
        data = json.dumps(document, ensure_ascii=False).encode("utf-8")
        atomic_write_bytes(self.probe_file, data + b"\n", durable=durable)

    def _unsynced_transaction(self, index: int) -> None:
        def mutate(document: dict[str, Any] | None) -> dict[str, Any]:
            assert document is not None
            document["phases"][PHASE.value]["bench_counter"] = index
            return document

        self.fast_store.transact(mutate, timeout=LOCK_TIMEOUT_SECONDS)

    def _minimal_update(self, index: int) -> None:
        # The minimum a locked, fsynced read-modify-write can do: an flock on a
        # descriptor of the same lock file, no validation, a fixed temp name.
        # It shares the lock with the tracker's heartbeat thread.
        descriptor = os.open(self.lock.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            document = json.loads(self.state_file.read_bytes())
            document["phases"][PHASE.value]["bench_counter"] = index
            data = json.dumps(document, ensure_ascii=False).encode("utf-8")
            with open(self.temp_file, "wb") as handle:
                handle.write(data + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(self.temp_file, self.state_file)
            fsync_dir(self.state_file.parent)
        finally:
            os.close(descriptor)

    def _lock_cycle(self) -> None:
        token = self.lock.acquire(LOCK_TIMEOUT_SECONDS)
        assert token is not None
        self.lock.release(token)


def _median(latencies: list[float]) -> float:
    return sorted(latencies)[len(latencies) // 2]


def _summary(prefix: str, latencies: list[float]) -> dict[str, float]:
    return {
        f"{prefix}_median": _median(latencies),
        f"{prefix}_p99": percentile(latencies, 0.99),
        f"{prefix}_per_second": len(latencies) / sum(latencies),
    }


class Readers:
    """Child processes that poll the state file for the whole measurement.

    Args:
        state_file: The file to poll.
        stop_file: Created to tell the readers to stop.
    """

    def __init__(self, state_file: Path, stop_file: Path) -> None:
        self.state_file = state_file
        self.stop_file = stop_file
        self.counts: dict[str, int] = {"reads": 0, "failures": 0}
        self._processes: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Readers:
        command = [
            sys.executable,
            str(READER_SCRIPT),
            str(self.state_file),
            str(self.stop_file),
            str(READER_INTERVAL_SECONDS),
        ]
        for _ in range(READERS):
            self._processes.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_file.touch()
        for process in self._processes:
            output, _ = process.communicate(timeout=30)
            counts = json.loads(output)
            for key in self.counts:
                self.counts[key] += counts[key]


def _ms(stats: Stats) -> Stats:
    return Stats([value * 1000 for value in stats.values])


def _result(
    stats: dict[str, Stats], counts: dict[str, int], updates: int
) -> BenchResult:
    ratio = paired_ratio(stats["ours_median"], stats["reference_median"])
    ours_ms = _ms(stats["ours_median"])
    result = BenchResult(
        name=NAME,
        title=TITLE,
        method=(
            f"Each run times {updates} single updates of each kind, one after "
            f"another, while {READERS} child processes read and parse the state "
            f"file every {READER_INTERVAL_SECONDS * 1000:g} ms. Ours is one "
            "`SetupTracker.set_phase_info` call: file lock, read the document "
            "(parsed and validated unless it is the tracker's own last write), "
            "write a temp file, fsync it, rename it over the state file, fsync "
            "the folder. The reference serializes the same document "
            "and writes it to a temp file that it renames over the state file, "
            "with no lock and no fsync. The parts are measured separately in the "
            "same run, so they do not add up exactly to the whole."
        ),
        rows=[
            Row("ours: median latency", ours_ms, "ms"),
            Row("ours: p99 latency", _ms(stats["ours_p99"]), "ms"),
            Row("ours: updates per second", stats["ours_per_second"], "1/s"),
            Row(
                "reference: median latency",
                _ms(stats["reference_median"]),
                "ms",
                "reference",
            ),
            Row(
                "reference: p99 latency", _ms(stats["reference_p99"]), "ms", "reference"
            ),
            Row(
                "reference: updates per second",
                stats["reference_per_second"],
                "1/s",
                "reference",
            ),
            Row("ours / reference (median latency)", ratio, "x", "ratio"),
            Row(
                "part: two fsyncs (file and folder)", _ms(stats["fsyncs"]), "ms", "part"
            ),
            Row("part: lock acquire and release", _ms(stats["lock"]), "ms", "part"),
            Row("part: read, parse, validate", _ms(stats["read"]), "ms", "part"),
            Row(
                "part: locked update without fsync",
                _ms(stats["locked_unsynced"]),
                "ms",
                "part",
            ),
            Row(
                "floor: minimal locked, fsynced update",
                _ms(stats["floor"]),
                "ms",
                "part",
            ),
            Row(
                "floor / reference",
                paired_ratio(stats["floor"], stats["reference_median"]),
                "x",
                "ratio",
            ),
        ],
        checks=[
            Check("at most 3 times the reference", ratio.median, MAX_RATIO, False, "x"),
            Check("median at most 1 ms", ours_ms.median, MAX_MEDIAN_MS, False, "ms"),
        ],
        params={
            "updates_per_run": updates,
            "readers": READERS,
            "reader_interval_seconds": READER_INTERVAL_SECONDS,
            "reads": counts["reads"],
            "failed_reads": counts["failures"],
        },
    )
    result.notes.append(
        f"The readers completed {counts['reads']} reads during the run; "
        f"{counts['failures']} of them found a document that was not valid JSON."
    )
    if not all(check.met for check in result.checks):
        result.notes.append(_why_missed(stats))
    return result


def _why_missed(stats: dict[str, Stats]) -> str:
    ours = stats["ours_median"].median * 1000
    reference = stats["reference_median"].median * 1000
    fsyncs = stats["fsyncs"].median * 1000
    lock = stats["lock"].median * 1000
    read = stats["read"].median * 1000
    rest = ours - reference - fsyncs - lock - read
    return (
        f"Why: a locked update costs {ours:.3f} ms against {reference:.3f} ms for "
        f"the plain write. Of the {ours - reference:.3f} ms difference, the two "
        f"fsyncs take {fsyncs:.3f} ms and the lock acquire and release "
        f"{lock:.3f} ms. Reading and validating the current document takes "
        f"{read:.3f} ms when the file changed since the tracker's last write, "
        f"and everything else {rest:.3f} ms: the state changes, and noise "
        "between the separate "
        "measurements."
    )
