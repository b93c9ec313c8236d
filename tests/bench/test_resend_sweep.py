"""The resend bench's sustained-rate sweep: when it stops and what it reports."""

from __future__ import annotations

from typing import Any

from jitstock.bench.resend_sweep import (
    SUSTAINED_LAG_P99_S,
    SWEEP_CROSSINGS,
    SWEEP_S,
    SWEEP_STOP_FAILURES,
    keep_sweeping,
    sustained,
    sustained_summary,
    sweep,
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


def test_a_phase_is_sustained_only_without_loss_caught_up_and_within_the_lag() -> None:
    assert sustained(1_000, 1_000, True, SUSTAINED_LAG_P99_S)
    assert not sustained(999, 1_000, True, 0.1)  # a reading lost
    assert not sustained(1_000, 1_000, False, 0.1)  # never caught up
    assert not sustained(1_000, 1_000, True, SUSTAINED_LAG_P99_S * 2)
    assert not sustained(1_000, 1_000, True, None)  # no lag figure: not shown to hold


def test_the_sweep_tries_rates_once_each_from_the_lowest_and_stops_on_failures() -> (
    None
):
    tried: list[tuple[int, float, int]] = []

    def phase(rate: int, seconds: float, crossings: int) -> dict[str, Any]:
        tried.append((rate, seconds, crossings))
        return _phase(rate, rate <= 10_000)

    got = sweep([40_000, 5_000, 20_000, 10_000, 5_000, 15_000, 30_000], phase)
    # 15,000 and 20,000 fail in a row: 30,000 and 40,000 are never tried
    assert tried == [
        (r, SWEEP_S, SWEEP_CROSSINGS) for r in (5_000, 10_000, 15_000, 20_000)
    ]
    assert [p["target_readings_s"] for p in got["sweep"]] == [r for r, _, _ in tried]
    assert got["max_sustained_target_readings_s"] == 10_000
    assert got["lowest_failed_target_readings_s"] == 15_000


def test_no_rates_no_phases() -> None:
    got = sweep([], lambda *_: _phase(0, True))
    assert got["sweep"] == []
    assert got["max_sustained_readings_s"] == 0
