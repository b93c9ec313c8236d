"""The closed-loop fill controller (feedback.py): a hand-computed sequence, bounds, hostile input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jitstock.server.replenish import feedback
from jitstock.server.replenish.feedback import GroupState, Settings

GAINS = Settings(kp=0.5, ki=0.2, min_mult=0.5, max_mult=4.0, min_days=14.0)


def test_hand_computed_sequence() -> None:
    """Four weekly recalculations of a 98 % group, every number worked out by hand."""
    st = GroupState()
    # week 1: 4 of 100 units short, but only 7 days seen: the controller waits
    st = feedback.step(feedback.observe(st, 4, 100, 7), 0.98, GAINS)
    assert (st.short, st.asked, st.days, st.integral, st.log_mult) == (
        4,
        100,
        7,
        0,
        0,
    )
    # week 2: 8 short of 200 asked, 4 allowed: ratio 2, e = ln 2
    st = feedback.step(feedback.observe(st, 4, 100, 7), 0.98, GAINS)
    e = math.log(2)
    assert st.integral == pytest.approx(0.2 * e)
    assert st.log_mult == pytest.approx(0.5 * e + 0.2 * e)
    assert st.multiplier == pytest.approx(2**0.7)
    # weeks 3-4: 200 more asked, none short: ratio 1, e = 0, the integral holds
    st = feedback.step(feedback.observe(st, 0, 200, 14), 0.98, GAINS)
    assert st.integral == pytest.approx(0.2 * e)
    assert st.multiplier == pytest.approx(2**0.2)
    # weeks 5-6: 400 more, none short: 8 of 800, ratio 1/2, e = −ln 2; integral back to 0
    st = feedback.step(feedback.observe(st, 0, 400, 14), 0.98, GAINS)
    assert st.integral == pytest.approx(0.0, abs=1e-12)
    assert st.multiplier == pytest.approx(2**-0.5)


def test_anti_windup_holds_the_integral_at_the_bound() -> None:
    """A shortfall far past the ceiling: f sits at max_mult, the integral stops at log max_mult."""
    st = GroupState()
    st = feedback.observe(st, 50, 100, 30)  # ratio 25, e clipped to ln 4
    seen = []
    for _ in range(20):
        st = feedback.step(st, 0.98, GAINS)
        seen.append(st.integral)
    assert st.multiplier == pytest.approx(4.0)
    assert max(seen) <= math.log(4.0) + 1e-12
    # the shortfall clears: f leaves the bound at once, not after unwinding a wound-up integral
    st = feedback.observe(st, 0, 100_000, 30)
    st = feedback.step(st, 0.98, GAINS)
    assert st.multiplier < 4.0


def test_no_shortage_reads_as_the_lowest_ratio() -> None:
    st = feedback.step(feedback.observe(GroupState(), 0, 100, 30), 0.95, GAINS)
    # e = −ln 4: kp·e + ki·e = −0.97 is below ln 0.5, so f sits at 0.5 and the integral waits
    assert st.log_mult == pytest.approx(math.log(0.5))
    assert st.integral == 0.0
    for _ in range(30):
        st = feedback.step(st, 0.95, GAINS)
    assert st.multiplier == pytest.approx(0.5)
    assert st.integral >= math.log(0.5) - 1e-12


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), -1.0, 0.0, 1.0, 2**63, 5e-324 * -1],
)
def test_hostile_targets_leave_the_state(bad: float) -> None:
    st = feedback.observe(GroupState(), 5, 100, 30)
    assert feedback.step(st, bad, GAINS) == st


@pytest.mark.parametrize(
    "values",
    [
        (float("nan"), 1, 1),
        (1, float("inf"), 1),
        (1, 1, -1),
        (-5e-324, 1, 1),
    ],
)
def test_hostile_observations_are_ignored(values: tuple[float, float, float]) -> None:
    st = feedback.observe(GroupState(), 5, 100, 30)
    assert feedback.observe(st, *values) == st


def test_short_counts_at_most_what_was_asked() -> None:
    st = feedback.observe(GroupState(), 2**63, 10, 1)
    assert st.short == 10


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "x",
        {"short": "1"},
        {"short": float("nan")},
        {"asked": -1.0},
        {"integral": True},
        {"log_mult": float("inf")},
    ],
)
def test_malformed_stored_state_starts_afresh(doc: object) -> None:
    assert GroupState.from_json(doc, GAINS) == GroupState()


def test_stored_state_round_trips_and_is_clipped() -> None:
    st = GroupState(short=3, asked=200, days=40, integral=0.3, log_mult=0.9)
    assert GroupState.from_json(st.to_json(), GAINS) == st
    wild = GroupState.from_json(
        {**st.to_json(), "log_mult": 1e9, "integral": -1e9}, GAINS
    )
    assert wild.multiplier == pytest.approx(4.0)
    assert wild.integral == pytest.approx(math.log(0.5))


@pytest.mark.parametrize(
    "kw",
    [
        {"kp": float("nan")},
        {"ki": -0.1},
        {"min_mult": 0.0},
        {"min_mult": 1.5},
        {"max_mult": 0.9},
        {"max_mult": float("inf")},
        {"min_days": True},
        {"kp": "1"},
    ],
)
def test_hostile_settings_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises((TypeError, ValueError)):
        Settings(**kw)  # type: ignore[arg-type]


def test_excess_short_hand_computed() -> None:
    sizes = np.asarray([0.0, 10.0, 0.0, 30.0, 50.0])
    # y = 20: picks 30 and 50 exceed it by 10 and 30 -> 20; y = 60: none, the mean pick 30
    out = feedback.excess_short(sizes, np.asarray([20.0, 60.0, 5.0]))
    assert out.tolist() == pytest.approx([20.0, 30.0, (5 + 25 + 45) / 3])
    assert feedback.excess_short(np.zeros(4), np.asarray([1.0])).tolist() == [0.0]
    assert feedback.excess_short(
        np.asarray([np.nan, np.inf, 4.0]), np.asarray([np.nan])
    ).tolist() == [4.0]


def test_groups() -> None:
    assert feedback.group_of("A", True) == "A/lumpy"
    assert feedback.group_of("B", False) == "B"
    assert feedback.class_of("A/lumpy") == "A"
    assert feedback.class_of("C") == "C"
