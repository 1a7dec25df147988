"""Repetition and timing: warm-up runs, then measured runs, as Stats."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from bench.model import BenchContext, Stats

logger = logging.getLogger(__name__)

# One repetition returns its figures by name, such as {"ours": 1.2, "curl": 1.0}.
Measurement = Callable[[], dict[str, float]]


def repeat(measure: Measurement, ctx: BenchContext, label: str) -> dict[str, Stats]:
    """Run ``measure`` ``ctx.warmup`` times unmeasured, then ``ctx.runs`` times.

    Args:
        measure: One repetition. A figure that a repetition does not return
            counts as 0 in it, such as a step that one run skipped.
        ctx: The run settings.
        label: Name for the progress log.

    Returns:
        Each figure's values over the measured repetitions.
    """
    for index in range(ctx.warmup):
        logger.info("%s: warm-up %d/%d", label, index + 1, ctx.warmup)
        measure()

    samples: list[dict[str, float]] = []
    for index in range(ctx.runs):
        started = time.perf_counter()
        samples.append(measure())
        logger.info(
            "%s: run %d/%d took %.2f s",
            label,
            index + 1,
            ctx.runs,
            time.perf_counter() - started,
        )

    keys = list(dict.fromkeys(key for sample in samples for key in sample))
    return {key: Stats([sample.get(key, 0.0) for sample in samples]) for key in keys}


def timed(action: Callable[[], object]) -> float:
    """Return the wall time of one call of ``action``, in seconds."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values`` (``fraction`` 0..1)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def paired_ratio(numerator: Stats, denominator: Stats) -> Stats:
    """Divide two figures repetition by repetition.

    Each repetition measures both sides back to back, so the ratio of a pair
    cancels most of the machine's drift between repetitions.
    """
    return Stats(
        [a / b for a, b in zip(numerator.values, denominator.values, strict=True)]
    )


def per_run(combine: Callable[..., float], *figures: Stats) -> Stats:
    """Combine several figures repetition by repetition, such as a share."""
    columns = zip(*(figure.values for figure in figures), strict=True)
    return Stats([combine(*column) for column in columns])
