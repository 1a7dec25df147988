"""Tests of download progress arithmetic and the rate-limited progress meter."""

from __future__ import annotations

import pytest
from download_support import FakeClock

from codemate_setup.download_progress import (
    DownloadProgress,
    ProgressMeter,
    remaining_seconds,
    transfer_rate,
)


def test_transfer_rate_between_samples() -> None:
    assert transfer_rate([(0.0, 0), (2.0, 1000)]) == 500.0


@pytest.mark.parametrize(
    "samples",
    [[], [(1.0, 10)], [(1.0, 10), (1.0, 20)]],
    ids=["none", "one", "no-time"],
)
def test_transfer_rate_unknown_is_zero(samples) -> None:
    assert transfer_rate(samples) == 0.0


@pytest.mark.parametrize(
    ("done", "total", "rate", "expected"),
    [
        (500, 1500, 100.0, 10.0),
        (1500, 1500, 0.0, 0.0),
        (500, None, 100.0, None),
        (500, 1500, 0.0, None),
    ],
    ids=["known", "finished", "no-total", "no-rate"],
)
def test_remaining_seconds_cases(done, total, rate, expected) -> None:
    assert remaining_seconds(done, total, rate) == expected


def make_meter(clock: FakeClock, reports: list[DownloadProgress]) -> ProgressMeter:
    return ProgressMeter(
        bytes_total=1000, files_total=2, callback=reports.append, clock=clock
    )


def test_meter_reports_at_most_every_interval() -> None:
    clock, reports = FakeClock(), []
    meter = make_meter(clock, reports)

    for _ in range(50):
        meter.add_bytes(10)
    clock.now += 0.05
    meter.add_bytes(10)
    clock.now += 0.06
    meter.add_bytes(10)

    assert len(reports) == 2
    assert reports[0].bytes_done == 10
    assert reports[1].bytes_done == 520


def test_meter_finish_reports_totals() -> None:
    clock, reports = FakeClock(), []
    meter = make_meter(clock, reports)
    meter.add_bytes(400, transferred=False)
    meter.add_file()
    clock.now += 0.01
    meter.add_bytes(600)
    meter.add_file()

    meter.finish()

    final = reports[-1]
    assert final.bytes_done == 1000
    assert final.files_done == 2
    assert final.eta_seconds == 0.0


def test_meter_rate_excludes_reused_bytes() -> None:
    clock, reports = FakeClock(), []
    meter = make_meter(clock, reports)
    meter.add_bytes(500, transferred=False)
    clock.now += 1.0
    meter.add_bytes(200)
    clock.now += 1.0

    meter.finish()

    assert reports[-1].bytes_per_second == pytest.approx(100.0)
    assert reports[-1].eta_seconds == pytest.approx(3.0)


def test_meter_rate_uses_recent_window() -> None:
    clock, reports = FakeClock(), []
    meter = make_meter(clock, reports)
    meter.add_bytes(100)
    for _ in range(20):
        clock.now += 1.0
        meter.add_bytes(10)

    meter.finish()

    assert reports[-1].bytes_per_second == pytest.approx(10.0)


def test_meter_without_callback_is_silent() -> None:
    meter = ProgressMeter(bytes_total=None, files_total=1, callback=None)
    meter.add_bytes(5)
    meter.finish()

    assert meter.snapshot().bytes_done == 5
