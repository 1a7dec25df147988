"""StallGuard: the floor on download speed, on a clock the tests move."""

from __future__ import annotations

from download_support import FakeClock

from codemate_setup.download_stall import StallGuard


def test_stall_guard_passes_fast_window() -> None:
    clock = FakeClock()
    guard = StallGuard(1000, 30.0, clock)

    clock.now += 30
    assert guard.add(1000) is None


def test_stall_guard_trips_on_slow_window() -> None:
    clock = FakeClock()
    guard = StallGuard(1000, 30.0, clock)
    for _ in range(30):
        clock.now += 1
        reason = guard.add(10)

    assert reason == (
        "the transfer stalled: 300 bytes arrived in 30.0 s, fewer than the 1000 "
        "bytes required every 30 s"
    )


def test_stall_guard_scales_floor_with_late_window() -> None:
    clock = FakeClock()
    guard = StallGuard(1000, 30.0, clock)
    guard.add(1000)

    clock.now += 59
    assert guard.add(1) is not None


def test_stall_guard_waits_for_a_whole_window() -> None:
    clock = FakeClock()
    guard = StallGuard(1000, 30.0, clock)

    clock.now += 29
    assert guard.add(1) is None


def test_stall_guard_starts_new_window_after_fast_one() -> None:
    clock = FakeClock()
    guard = StallGuard(1000, 30.0, clock)
    clock.now += 30
    guard.add(5000)

    clock.now += 29
    assert guard.add(1) is None


def test_stall_guard_off_with_zero_bytes() -> None:
    clock = FakeClock()
    guard = StallGuard(0, 30.0, clock)

    clock.now += 3600
    assert guard.add(1) is None
