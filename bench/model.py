"""Results of a benchmark: measured rows, goal checks and notes."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Stats:
    """Values of one figure over the measured repetitions."""

    values: list[float]

    @property
    def median(self) -> float:
        """Median of the values."""
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        """Smallest value."""
        return min(self.values)

    @property
    def max(self) -> float:
        """Largest value."""
        return max(self.values)

    def as_dict(self) -> dict[str, Any]:
        """Return the values and their summary for the JSON results."""
        return {
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "values": self.values,
        }


@dataclass
class Row:
    """One measured figure, such as our wall time or curl's throughput.

    Attributes:
        label: What was measured, as shown in the table.
        stats: The values over the repetitions.
        unit: Unit of the values, such as ``s``, ``ms``, ``MiB/s`` or ``x``.
        role: ``ours``, ``reference``, ``ratio`` or ``part`` (a breakdown).
    """

    label: str
    stats: Stats
    unit: str
    role: str = "ours"


@dataclass
class Check:
    """A goal compared with its measured value (the median of the repetitions).

    Attributes:
        goal: The goal in words, such as ``at least 0.9 of curl's throughput``.
        value: The measured value.
        threshold: The bound the value must reach.
        higher_is_better: True when the value must be at least ``threshold``,
            False when it must be at most (or under) ``threshold``.
        unit: Unit of ``value`` and ``threshold``.
    """

    goal: str
    value: float
    threshold: float
    higher_is_better: bool
    unit: str = "x"

    @property
    def met(self) -> bool:
        """Whether the measured value reaches the goal."""
        if self.higher_is_better:
            return self.value >= self.threshold
        return self.value <= self.threshold

    @property
    def shortfall(self) -> float:
        """How far the value is from the goal, as a fraction of the threshold.

        Zero when the goal is met.
        """
        if self.met or self.threshold == 0:
            return 0.0
        return abs(self.value - self.threshold) / abs(self.threshold)


@dataclass
class BenchContext:
    """Settings shared by every benchmark of one run.

    Attributes:
        quick: Tiny data and a single repetition, to prove the scripts work.
        runs: Measured repetitions per figure.
        warmup: Unmeasured repetitions before them.
        workdir: Temp folder of one benchmark, removed after it.
        shared: Temp folder for data that several benchmarks reuse, such as
            the 1 GiB release; removed at the end of the run.
        root: The repository root.
        python: The interpreter that runs the toolkit's scripts.
    """

    quick: bool
    runs: int
    warmup: int
    workdir: Path
    shared: Path
    root: Path
    python: str


@dataclass
class BenchResult:
    """Everything one benchmark reports.

    Attributes:
        name: Short name used by ``--only``, such as ``state``.
        title: Heading of its section on the results page.
        method: What is measured and against which reference, in sentences.
        rows: The measured figures.
        checks: The goals and whether they were met.
        notes: Sentences for the page, such as why a goal was missed.
        params: Data sizes and counts used, for the JSON results.
        error: Why the benchmark could not run, or None when it ran.
    """

    name: str
    title: str
    method: str = ""
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the result as plain data for ``latest.json``."""
        return {
            "name": self.name,
            "title": self.title,
            "method": self.method,
            "params": self.params,
            "error": self.error,
            "rows": [
                {
                    "label": row.label,
                    "unit": row.unit,
                    "role": row.role,
                    **row.stats.as_dict(),
                }
                for row in self.rows
            ],
            "checks": [
                {
                    "goal": check.goal,
                    "value": check.value,
                    "threshold": check.threshold,
                    "higher_is_better": check.higher_is_better,
                    "unit": check.unit,
                    "met": check.met,
                    "shortfall": check.shortfall,
                }
                for check in self.checks
            ],
            "notes": self.notes,
        }
