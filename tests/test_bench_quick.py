"""Smoke test of the benchmark runner: the scripts run, the page is written.

Timings are never asserted: benchmarks report figures, they do not pass or
fail on a slow machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import run as bench_run  # noqa: E402
from bench.model import Check  # noqa: E402
from bench.report import format_value  # noqa: E402

RUNNER = ROOT / "bench" / "run.py"
# Benchmarks whose quick mode takes seconds; the others build environments.
CHEAP = ["state", "download", "small_files", "update", "memory"]
SLOW = ["verify", "setup"]


def run_bench(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def run_quick(folder: Path, names: list[str]) -> dict:
    output = folder / "benchmarks.md"
    results = folder / "latest.json"
    data = folder / "data"
    data.mkdir()
    completed = run_bench(
        "--quick",
        "--only",
        *names,
        "--output",
        str(output),
        "--json",
        str(results),
        "--workdir",
        str(data),
    )
    return {
        "completed": completed,
        "output": output,
        "results": results,
        "data": data,
    }


HEADINGS = [
    "## State update with 2 readers polling",
    "## One 1 GiB file: download, hash and install",
    "## 5,000 files of 4 KiB: fresh install",
    "## One changed file in a 20,000-file, 1 GiB installation",
    "## Peak memory while installing a 1 GiB file",
]


# One test runs them all at once: under pytest-xdist a module fixture would run
# once per worker, and this run is the costly part of the file.
def test_quick_run_of_cheap_benchmarks(tmp_path: Path) -> None:
    run = run_quick(tmp_path, CHEAP)
    completed = run["completed"]
    assert completed.returncode == 0, completed.stderr

    page = run["output"].read_text()
    for heading in HEADINGS:
        assert heading in page, f"the page lacks {heading!r}"
    assert f"python bench/run.py --quick --only {' '.join(CHEAP)}" in page
    assert "| Python | CPython" in page

    document = json.loads(run["results"].read_text())
    results = {item["name"]: item for item in document["benchmarks"]}
    assert list(results) == CHEAP
    for name, result in results.items():
        assert result["error"] is None, f"{name}: {result['error']}"
        assert result["checks"], f"{name} reported no goal"
    assert results["state"]["params"]["failed_reads"] == 0

    assert list(run["data"].iterdir()) == [], "the generated data was left behind"


@pytest.mark.slow
def test_quick_run_of_environment_benchmarks(tmp_path: Path) -> None:
    run = run_quick(tmp_path, SLOW)
    assert run["completed"].returncode == 0, run["completed"].stderr
    document = json.loads(run["results"].read_text())
    assert [item["error"] for item in document["benchmarks"]] == [None, None]
    assert list(run["data"].iterdir()) == []


def test_failed_benchmark_exits_one(tmp_path: Path) -> None:
    output = tmp_path / "page.md"
    results = tmp_path / "latest.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv[0] = 'bench/run.py'; "
            "from bench import run, bench_state; "
            "bench_state.run = lambda ctx: 1 / 0; "
            "sys.exit(run.main(sys.argv[1:]))",
            "--quick",
            "--only",
            "state",
            "--output",
            str(output),
            "--json",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 1
    assert "these benchmarks could not run: state" in completed.stderr
    assert "Did not run: ZeroDivisionError" in output.read_text()


def test_quick_default_output_spares_docs_page() -> None:
    args = bench_run.build_parser().parse_args(["--quick"])
    page, results = bench_run.output_paths(args)
    assert page == bench_run.QUICK_OUTPUT
    assert results == bench_run.QUICK_JSON


def test_full_default_output_is_docs_page() -> None:
    args = bench_run.build_parser().parse_args([])
    page, _ = bench_run.output_paths(args)
    assert page == ROOT / "docs" / "benchmarks.md"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--only", "nosuch"], "invalid choice: 'nosuch'"),
        (["--runs", "0"], "must be at least 1, got '0'"),
        (["--warmup", "-1"], "must be 0 or more, got '-1'"),
        (["--runs", "five"], "must be a whole number, got 'five'"),
    ],
    ids=["unknown-name", "zero-runs", "negative-warmup", "runs-not-number"],
)
def test_runner_rejects_invalid_usage(arguments: list[str], message: str) -> None:
    completed = run_bench(*arguments)
    assert completed.returncode == 2
    assert message in completed.stderr


def test_runner_rejects_missing_workdir(tmp_path: Path) -> None:
    output = tmp_path / "page.md"
    completed = run_bench(
        "--quick",
        "--only",
        "state",
        "--output",
        str(output),
        "--workdir",
        str(tmp_path / "missing"),
    )
    assert completed.returncode == 2
    assert "--workdir must be an existing folder" in completed.stderr
    assert not output.exists()


@pytest.mark.parametrize(
    ("value", "higher_is_better", "met", "shortfall"),
    [
        (0.95, True, True, 0.0),
        (0.45, True, False, 0.5),
        (2.0, False, True, 0.0),
        (4.5, False, False, 0.5),
    ],
    ids=["at-least-met", "at-least-missed", "at-most-met", "at-most-missed"],
)
def test_check_compares_against_threshold(
    value: float, higher_is_better: bool, met: bool, shortfall: float
) -> None:
    threshold = 0.9 if higher_is_better else 3.0
    check = Check("goal", value, threshold, higher_is_better)
    assert check.met is met
    assert check.shortfall == pytest.approx(shortfall)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1234.5, "MiB/s", "1,234 MiB/s"),
        (12.345, "x", "12.3 x"),
        (1.2345, "ms", "1.23 ms"),
        (0.012345, "s", "0.0123 s"),
    ],
    ids=["hundreds", "tens", "units", "fractions"],
)
def test_format_value_suits_magnitude(value: float, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_command_hides_workdir_value() -> None:
    shown = bench_run._without_paths(["--workdir", "/srv/data", "--only", "state"])
    assert shown == ["--workdir", "DIR", "--only", "state"]


def test_command_hides_joined_output_value() -> None:
    assert bench_run._without_paths(["--output=/home/me/page.md"]) == ["--output=FILE"]


def test_command_keeps_other_options() -> None:
    assert bench_run._without_paths(["--quick", "--only", "setup"]) == [
        "--quick",
        "--only",
        "setup",
    ]
