"""Writers of the results: the Markdown page and the raw JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.model import BenchContext, BenchResult, Check, Row
from codemate_setup.fsutil import atomic_write_bytes

COMMAND = "python bench/run.py"
# Hand-written analysis of a benchmark, from profiles, shown under its figures.
ANALYSIS_DIR = Path(__file__).with_name("analysis")

HOW_TO_RUN = f"""\
## How to run

```sh
{COMMAND}                 # every benchmark, writes this page (4 to 15 minutes)
{COMMAND} --only state    # one or more benchmarks by name
{COMMAND} --quick         # tiny data, one run: proves the scripts work
```

Run it from the repository root with the project's virtual environment (`.venv`)
active. It needs `curl` on the `PATH`. The data (up to about 10 GiB) is generated in
a temp folder (`--workdir` chooses where) and removed afterwards. The full run
writes this page and `bench/results/latest.json`; `--quick` writes
`bench/results/quick.md` and `bench/results/quick.json` unless `--output` and
`--json` choose other paths. Names: {{names}}.

Every figure is the median of the measured runs after the warm-up, with the
minimum and maximum beside it. Each benchmark measures its reference in the same
repetitions as its own figures, so the ratios stay meaningful on a noisy
machine. A ratio is computed per repetition and then summarized. Benchmarks are
not tests: a missed goal is reported here and fails nothing. Child processes
write and use Python's bytecode caches (`PYTHONDONTWRITEBYTECODE` is removed
from their environment), as a toolkit does after its first run. `sync` runs
before each benchmark, so data that an earlier benchmark left to write does not
slow the next one.
"""


def format_value(value: float, unit: str) -> str:
    """Format a figure with a precision that suits its size."""
    magnitude = abs(value)
    if magnitude >= 100:
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}" if unit else text


def render_page(
    results: Sequence[BenchResult],
    ctx: BenchContext,
    facts: dict[str, str],
    command: str,
    started: str,
    duration_seconds: float,
    names: Sequence[str],
) -> str:
    """Render the results page as Markdown.

    Args:
        results: One result per benchmark that ran, in run order.
        ctx: The run settings.
        facts: Machine and software facts from ``machine_facts``.
        command: The exact command line of this run.
        started: When the run started, as an ISO 8601 time.
        duration_seconds: Wall time of the whole run.
        names: Every benchmark name, for the how-to section.
    """
    lines = [
        "# Benchmarks",
        "",
        f"Measured with `{command}` on {started}, in "
        f"{duration_seconds / 60:.1f} minutes: {ctx.warmup} warm-up "
        f"run{'s' if ctx.warmup != 1 else ''} and {ctx.runs} measured "
        f"run{'s' if ctx.runs != 1 else ''} per figure"
        f"{', with tiny data (--quick)' if ctx.quick else ''}.",
        "",
        HOW_TO_RUN.format(names=", ".join(f"`{name}`" for name in names)),
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {key} | {value} |" for key, value in facts.items()],
        "",
        "## Summary",
        "",
        "| benchmark | goal | measured | result |",
        "| --- | --- | --- | --- |",
        *_summary_rows(results),
        "",
    ]
    for result in results:
        lines.extend(_section(result))
    return "\n".join(lines).rstrip() + "\n"


def _summary_rows(results: Sequence[BenchResult]) -> list[str]:
    rows = []
    for result in results:
        if result.error:
            rows.append(f"| {result.title} | | | did not run |")
            continue
        for check in result.checks:
            rows.append(
                f"| {result.title} | {check.goal} | "
                f"{format_value(check.value, check.unit)} | {_verdict(check)} |"
            )
    return rows


def _verdict(check: Check) -> str:
    if check.met:
        return "met"
    return f"missed by {check.shortfall:.0%}"


def _section(result: BenchResult) -> list[str]:
    lines = [f"## {result.title}", ""]
    if result.method:
        lines += [result.method, ""]
    if result.error:
        return lines + [f"Did not run: {result.error}", ""]

    lines += [
        "| figure | median | min | max |",
        "| --- | --- | --- | --- |",
        *[_row(row) for row in result.rows],
        "",
        "| goal | measured (median) | result |",
        "| --- | --- | --- |",
        *[
            f"| {check.goal} | {format_value(check.value, check.unit)} | "
            f"{_verdict(check)} |"
            for check in result.checks
        ],
        "",
    ]
    for note in result.notes:
        lines += [note, ""]

    analysis = ANALYSIS_DIR / f"{result.name}.md"
    if analysis.is_file():
        lines += [analysis.read_text(encoding="utf-8").rstrip(), ""]
    return lines


def _row(row: Row) -> str:
    stats = row.stats
    return (
        f"| {row.label} | {format_value(stats.median, row.unit)} | "
        f"{format_value(stats.min, row.unit)} | {format_value(stats.max, row.unit)} |"
    )


def results_document(
    results: Sequence[BenchResult],
    ctx: BenchContext,
    facts: dict[str, str],
    command: str,
    started: str,
    duration_seconds: float,
) -> dict[str, Any]:
    """Return every figure of the run as plain data."""
    return {
        "command": command,
        "started": started,
        "duration_seconds": duration_seconds,
        "quick": ctx.quick,
        "runs": ctx.runs,
        "warmup": ctx.warmup,
        "machine": facts,
        "benchmarks": [result.as_dict() for result in results],
    }


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(document, indent=2) + "\n")
