"""Full setup of the bundled example releases, split by step.

Each run installs ``examples/releases-src/2.9.0`` into an empty home with
``setup_orchestrator.py``, then updates it to 3.0.0 the same way. There is no
reference: the figures are the wall time, each step's duration from the state
file, and the time spent in state-file writes, which a ``sitecustomize``
hook (``bench/tracer``) adds up in every process of the setup.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path

from bench.data import publish
from bench.model import BenchContext, BenchResult, Check, Row, Stats
from bench.processes import run_measured
from bench.servers import Middleware
from bench.timing import per_run, repeat
from bench.toolkit import free_service_ports, script_env
from codemate_setup.state import Phase

logger = logging.getLogger(__name__)

NAME = "setup"
TITLE = "Full setup of the bundled example releases"
VERSIONS = ("2.9.0", "3.0.0")
MAX_TRACKER_PERCENT = 1.0
TRACER = Path(__file__).with_name("tracer")
TRACE_VARIABLE = "CODEMATE_BENCH_TRACE"
# Figures that the tracer reports per process.
TRACE_FIGURES = ("writes", "seconds", "longest", "main_writes", "main_seconds")


def run(ctx: BenchContext) -> BenchResult:
    """Measure two orchestrated setups and split their time by step."""
    releases = ctx.workdir / "releases"
    for version in VERSIONS:
        publish(ctx.root / "examples" / "releases-src" / version, version, releases)

    repetitions = itertools.count(1)
    trace = ctx.workdir / "trace.jsonl"
    env = script_env()
    env["PYTHONPATH"] = str(TRACER)
    env[TRACE_VARIABLE] = str(trace)

    def measure_once() -> dict[str, float]:
        # A new home each time, kept until the benchmark ends. Creating files
        # on ext4 cost far more CPU time for a few minutes after many files
        # were deleted nearby (measured, see bench/analysis/small_files.md),
        # which would lengthen the next environment build.
        home = ctx.workdir / f"home-{next(repetitions)}"
        figures = dict.fromkeys(["wall", *TRACE_FIGURES], 0.0)
        for version in VERSIONS:
            trace.unlink(missing_ok=True)
            command = _setup_command(ctx, version, server.url, home)
            os.sync()
            figures["wall"] += run_measured(command, env=env).seconds
            for key, value in _traced_writes(trace).items():
                figures[key] = (
                    max(figures[key], value)
                    if key == "longest"
                    else (figures[key] + value)
                )
            for step, duration in _steps(home / "setup_state.json").items():
                figures[f"step {step}"] = figures.get(f"step {step}", 0.0) + duration
        return figures

    with Middleware(releases, ctx.python, ctx.root) as server:
        # Chosen once the middleware listens, so that none of them is its port.
        env.update(free_service_ports())
        stats = repeat(measure_once, ctx, NAME)
    return _result(stats)


def _setup_command(
    ctx: BenchContext, version: str, middleware_url: str, home: Path
) -> list[str]:
    return [
        ctx.python,
        str(ctx.root / "setup_orchestrator.py"),
        version,
        "--middleware-url",
        middleware_url,
        "--home",
        str(home),
        "--yes",
    ]


def _traced_writes(trace: Path) -> dict[str, float]:
    if not trace.exists():
        raise RuntimeError(
            f"no process of the setup reported its state writes in {trace}; "
            f"check that {TRACER} is on PYTHONPATH"
        )
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    totals = {
        key: float(sum(record[key] for record in records)) for key in TRACE_FIGURES
    }
    totals["longest"] = max(record["longest"] for record in records)
    return totals


def _steps(state_file: Path) -> dict[str, float]:
    document = json.loads(state_file.read_text(encoding="utf-8"))
    durations = {}
    for phase in Phase:
        for timing in document["phases"][phase.value].get("step_timings") or []:
            seconds = timing.get("duration_seconds")
            if seconds is not None:
                durations[f"{phase.value}: {timing['step']}"] = seconds
    return durations


def _percent(part: float, whole: float) -> float:
    return 100 * part / whole


def _mean_ms(seconds: float, count: float) -> float:
    return 1000 * seconds / count if count else 0.0


def _ms(seconds: Stats) -> Stats:
    return Stats([value * 1000 for value in seconds.values])


def _result(stats: dict[str, Stats]) -> BenchResult:
    wall = stats["wall"]
    share = per_run(_percent, stats["seconds"], wall)
    main_share = per_run(_percent, stats["main_seconds"], wall)
    per_write = per_run(_mean_ms, stats["seconds"], stats["writes"])
    steps = {key: value for key, value in stats.items() if key.startswith("step ")}
    in_steps = per_run(lambda *durations: sum(durations), *steps.values())
    outside = per_run(lambda whole, inside: whole - inside, wall, in_steps)
    rows = [
        Row("wall time of both setups", wall, "s"),
        Row("state-file writes", stats["writes"], ""),
        Row("time in state-file writes", stats["seconds"], "s"),
        Row("mean state-file write", per_write, "ms"),
        Row("longest state-file write", _ms(stats["longest"]), "ms"),
        Row("share of the wall time in state-file writes", share, "%", "ratio"),
        Row("state-file writes in main threads", stats["main_writes"], ""),
        Row("share of the wall time in main-thread writes", main_share, "%", "ratio"),
        Row(
            "outside the steps (start-up, imports, phase changes)", outside, "s", "part"
        ),
    ]
    rows += [
        Row(key.removeprefix("step "), value, "s", "part")
        for key, value in steps.items()
    ]
    return BenchResult(
        name=NAME,
        title=TITLE,
        method=(
            f"Each run installs version {VERSIONS[0]} of the bundled examples into "
            "a new, empty home with `setup_orchestrator.py VERSION --yes`, then "
            f"updates it to {VERSIONS[1]} the same way, from the reference "
            "middleware on 127.0.0.1. `sync` runs before each setup. The "
            "example releases need no third-party package, so the verification "
            "builds an environment with nothing to install. The step durations "
            "come from each setup's `step_timings` in the state file and are "
            "summed over both setups. "
            "The time in state-file writes adds up every `StateStore.transact` "
            "call (lock wait, read, write and fsyncs) in every process of the "
            "setup, timed by the `sitecustomize` hook in `bench/tracer`. The "
            "writes in main threads are those that block the setup's work. The "
            "others come from the tracker's heartbeat thread."
        ),
        rows=rows,
        checks=[
            Check(
                "tracker writes under 1% of the wall time",
                share.median,
                MAX_TRACKER_PERCENT,
                False,
                "%",
            )
        ],
        params={"versions": list(VERSIONS)},
    )
