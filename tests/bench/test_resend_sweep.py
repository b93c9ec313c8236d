"""The resend bench's sustained-rate sweep: when it stops and what it reports."""

from __future__ import annotations

from typing import Any

from jitstock.bench.resend import (
    SWEEP_STOP_FAILURES,
    keep_sweeping,
    sustained_summary,
)


def _phase(target: int, ok: bool) -> dict[str, Any]:
    return {
        "target_readings_s": target,
        "published_readings_s": target - 7,
        "sustained": ok,
    }


def test_a_single_failure_does_not_end_the_sweep() -> None:
    phases = [_phase(5_000, True), _phase(10_000, False)]
    assert keep_sweeping(phases)


def test_failures_in_a_row_end_the_sweep() -> None:
    phases = [_phase(5_000, True)] + [
        _phase(10_000 * (i + 1), False) for i in range(SWEEP_STOP_FAILURES)
    ]
    assert not keep_sweeping(phases)


def test_a_failure_at_the_lowest_rate_still_tries_the_next() -> None:
    # the base of issue 12 failed its lowest rate (20,000/s): the sweep must go on
    assert keep_sweeping([_phase(5_000, False)])


def test_summary_names_the_highest_sustained_and_the_strict_limit() -> None:
    phases = [
        _phase(5_000, True),
        _phase(10_000, True),
        _phase(15_000, False),
        _phase(20_000, True),
        _phase(30_000, False),
    ]
    got = sustained_summary(phases)
    assert got == {
        "max_sustained_readings_s": 19_993,
        "max_sustained_target_readings_s": 20_000,
        "sustained_below_first_failure_readings_s": 10_000,
        "lowest_failed_target_readings_s": 15_000,
    }


def test_summary_of_a_sweep_that_sustained_nothing() -> None:
    got = sustained_summary([_phase(5_000, False), _phase(10_000, False)])
    assert got["max_sustained_readings_s"] == 0
    assert got["max_sustained_target_readings_s"] == 0
    assert got["sustained_below_first_failure_readings_s"] == 0
    assert got["lowest_failed_target_readings_s"] == 5_000
