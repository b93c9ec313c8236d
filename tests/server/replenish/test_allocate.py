"""Per-part fill targets allocated within a class: a hand-computed case, the floor, and a property test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitstock.server.replenish import allocate, calibrate, ltd

# Eight equally likely lead-time demands; the next day always adds exactly one unit, and
# with a tiny order multiple the daily shortage at an integer s is P(X_L ≥ s), so the fill
# at s = 0, 1, 2, 3..6, 7 is 0, ½, ¾, ⅞, 1 — by hand.
LEAD = np.asarray([[0, 0, 0, 0, 1, 1, 2, 6]], dtype=np.float64)
TINY_Q = 1e-3


def _two_parts() -> tuple[np.ndarray, np.ndarray]:
    x0 = np.repeat(LEAD, 2, axis=0)
    return x0, x0 + 1.0


def _plan_fill(x0, x1, targets, q):
    """Independent check: solve each part's s for its target, then its fill on the draws."""
    s = ltd.fill_rate_level(x0, x1, targets, q)
    mu = (x1 - x0).mean(axis=1)
    fill = 1 - ltd.daily_shortage(x0, x1, s, q) / np.where(mu > 0, mu, 1.0)
    fill = np.where(mu > 0, fill, 1.0)
    return s, float((mu * fill).sum() / mu.sum()) if mu.sum() > 0 else 1.0


def test_cheaper_part_gets_more_fill_hand_computed():
    """Costs 1 and 4, class target 80 %, floor 50 %.

    Fill per unit of value: the cheap part buys ½, ¼, ⅛ per unit of s up to
    s = 3 (then ⅛ for four more units: 1/32), the dear one ¼·¼ = 1/16 between
    s = 1 and 2.  So the cheap part goes to 3 (⅞) and the dear one takes the
    rest: f₂ = 1.6 − ⅞ = 0.725 at s = 1.9 — value 3 + 4·1.9 = 10.6, against
    12 with both parts at the class target (s = 2.4, value 2.4 + 4·2.4).  The
    grid of s (quantile points of the draws) lands next to it: (2.95, 2),
    fills (0.869, 0.75), value 10.95.
    """
    x0, x1 = _two_parts()
    q = np.full(2, TINY_Q)
    cost = np.asarray([1.0, 4.0])
    a = allocate.allocate(
        x0, x1, q, cost, ["A", "A"], {"A": 0.8}, floor=0.5, backorder_weight=0
    )
    assert a.targets[0] > a.targets[1]
    assert a.targets == pytest.approx([0.869, 0.75], abs=3e-3)
    assert a.uniform == {"A": False}
    assert a.planned_fill["A"] >= 0.8
    s, fill = _plan_fill(x0, x1, a.targets, q)
    assert fill >= 0.8 - 1e-6
    assert s == pytest.approx([2.95, 2.0], abs=0.01)
    flat = ltd.fill_rate_level(x0, x1, np.full(2, 0.8), q)
    assert flat == pytest.approx([2.4, 2.4], abs=0.01)
    assert 10.6 - 0.01 <= float(s @ cost) <= 11.0 < float(flat @ cost)


def test_floor_keeps_a_dear_part_from_being_given_up():
    x0, x1 = _two_parts()
    q = np.full(2, TINY_Q)
    cost = np.asarray([1.0, 100.0])
    low = allocate.allocate(
        x0, x1, q, cost, ["B", "B"], {"B": 0.8}, floor=0.5, backorder_weight=0
    )
    high = allocate.allocate(
        x0, x1, q, cost, ["B", "B"], {"B": 0.8}, floor=0.75, backorder_weight=0
    )
    # the cheap part carries the class (to the top, 0.9999); the dear one takes what is
    # left, 1.6 − 0.9999 ≈ 0.6, rounded up to the end of its linear stretch on the grid
    # (s = 1.85, fill 0.7125) — under a floor of 0.75, which then holds
    assert low.targets[0] > 0.99
    assert 0.6 <= low.targets[1] == pytest.approx(0.7125, abs=2e-3)
    # the floor of 0.75 holds as fill or as cycle service, whichever is cheaper: 3/4 of
    # these draws are at most 1, so s = 1 (fill ½, on the grid 0.500125) already meets it
    # as cycle service, and the allocation's own choice (0.7125) stands
    floors = allocate.part_floors(allocate.curves(x0, x1, q), 0.75)
    assert floors == pytest.approx([0.5, 0.5], abs=2e-4)
    assert high.targets[1] >= floors[1] - 1e-9
    assert high.targets[1] == pytest.approx(0.7125, abs=2e-3)
    for a in (low, high):
        assert _plan_fill(x0, x1, a.targets, q)[1] >= 0.8 - 1e-6
    # a floor above the class target is lowered to the class target (0.6, met as cycle
    # service at s = 1, fill ½, by the dear part), and the class still meets its target
    capped = allocate.allocate(x0, x1, q, cost, ["C", "C"], {"C": 0.6}, floor=0.9)
    assert min(capped.targets) >= 0.5
    assert _plan_fill(x0, x1, capped.targets, q)[1] >= 0.6 - 1e-6


def test_cycle_service_hand_computed():
    """Draws of X_L 0, 10, 20, 30 and Q = 10: the position after an order is uniform on (s, s + 10].

    At s = 10 a cycle is safe when X_L < Y: surely for 0 and 10 (Y > 10),
    never for 20 and 30 (Y ≤ 20) — ½.  At s = 15: 0 and 10 surely, 20 with
    probability ½ (Y uniform on (15, 25]), 30 never — (1 + 1 + ½)/4 = 0.625.
    """
    x = np.asarray([[0.0, 10.0, 20.0, 30.0]] * 2)
    got = allocate.cycle_service(x, np.asarray([10.0, 15.0]), np.asarray([10.0, 10.0]))
    assert got == pytest.approx([0.5, 0.625])


def test_floor_is_fill_or_cycle_service_whichever_is_cheaper():
    """Hand-made curves on a grid of s = 0, 10, 20, 30 and a floor of 90 %.

    A lumpy part (fill 0.5, 0.7, 0.85, 0.95; cycles 0.3, 0.92, 0.97, 1)
    meets 90 % of cycles at s = 10, where its fill is 0.7: its floor is 0.7.
    A smooth part (fill 0.6, 0.93, 0.99, 1; cycles 0.2, 0.5, 0.9, 1) meets
    90 % fill first, at s = 10: its floor stays 0.9.  A part meeting neither
    before the top of its grid takes the top's fill, if lower than the floor.
    """
    s = np.tile([0.0, 10.0, 20.0, 30.0], (3, 1))
    fill = np.asarray(
        [[0.5, 0.7, 0.85, 0.95], [0.6, 0.93, 0.99, 1.0], [0.1, 0.2, 0.3, 0.4]]
    )
    cycle = np.asarray(
        [[0.3, 0.92, 0.97, 1.0], [0.2, 0.5, 0.9, 1.0], [0.1, 0.2, 0.3, 0.5]]
    )
    c = allocate.Curves(s, fill, np.ones(3), cycle, np.zeros((3, 4)))
    assert allocate.part_floors(c, 0.9) == pytest.approx([0.7, 0.9, 0.4])
    # with a cost that makes s = 0 the free choice, the floors still bind
    t = allocate.part_targets(c, np.ones(3), 1e-9, 0.9)
    assert t == pytest.approx([0.7, 0.93, 0.4])


def test_backorder_weight_lifts_the_dear_part_hand_computed():
    """Hand-made curves on s = 0, 10, 20, 30: fill 0.5, 0.8, 0.95, 0.99 (a unit a day).

    Expected backlog 6, 1.5, 0.3, 0.05; λ = 100 per unit short a day.  Each
    part minimises c·(s + w·backlog) + λ·short, i.e. per unit of its value
    s + w·backlog + (λ/c)·short.  The cheap part (c = 1, λ/c = 100): at
    w = 0 the terms are 50, 30, 25, 31 and at w = 5 80, 37.5, 26.5, 32.25 —
    s = 20 (0.95) either way.  The dear part (c = 50, λ/c = 2): at w = 0
    1, 10.4, 20.1, 30.02 — s = 0 (0.5); at w = 5 31, 17.9, 21.6, 30.27 —
    s = 10 (0.8); at w = 20 121, 40.4, 26.1, 31.02 — s = 20 (0.95).
    """
    s = np.tile([0.0, 10.0, 20.0, 30.0], (2, 1))
    fill = np.tile([0.5, 0.8, 0.95, 0.99], (2, 1))
    backlog = np.tile([6.0, 1.5, 0.3, 0.05], (2, 1))
    c = allocate.Curves(s, fill, np.ones(2), fill, backlog)
    cost = np.asarray([1.0, 50.0])
    got = {w: allocate.part_targets(c, cost, 100.0, 0.5, w) for w in (0, 5, 20)}
    assert got[0] == pytest.approx([0.95, 0.5])
    assert got[5] == pytest.approx([0.95, 0.8])
    assert got[20] == pytest.approx([0.95, 0.95])


def test_expected_backlog_hand_computed():
    """X_L of 0, 10, 20, 30 and Q = 10, s = 10: E[(X_L − Y)⁺] with Y uniform on (10, 20].

    For 0 and 10 it is 0; for 20, E[20 − Y] = 5; for 30, E[30 − Y] = 15 —
    mean (5 + 15)/4 = 5.  At s = 30 nothing is ever on backorder.
    """
    x = np.asarray([[0.0, 10.0, 20.0, 30.0]] * 2)
    got = ltd.expected_backlog(x, np.asarray([10.0, 30.0]), np.asarray([10.0, 10.0]))
    assert got == pytest.approx([5.0, 0.0])


def test_calibration_raises_the_class_plan():
    x0, x1 = _two_parts()
    q = np.full(2, TINY_Q)
    cost = np.asarray([1.0, 4.0])
    base = allocate.allocate(x0, x1, q, cost, ["A", "A"], {"A": 0.8}, floor=0.5)
    raised = allocate.allocate(
        x0, x1, q, cost, ["A", "A"], {"A": 0.8}, floor=0.5, calibration={"A": 2.0}
    )
    # 1 − (1 − 0.8)/2 = 0.9 planned so that 0.8 is achieved
    assert raised.aimed == {"A": pytest.approx(0.9)}
    assert raised.planned_fill["A"] >= 0.9 - 1e-6 > base.planned_fill["A"]


def test_unknown_class_and_hostile_values_are_left_alone():
    x0, x1 = _two_parts()
    a = allocate.allocate(
        x0,
        x1,
        np.full(2, TINY_Q),
        np.asarray([np.nan, -5.0]),  # no price: valued at the median of the rest (or 1)
        ["X", "A"],
        {"A": 0.8},
        floor=0.5,
    )
    assert np.isnan(a.targets[0])  # a class without a target keeps the caller's
    assert (
        a.targets[1] >= 0.8 - 1e-9
    )  # alone in its class it must meet the target itself
    c = allocate.curves(np.zeros((1, 0)), np.zeros((1, 0)), np.ones(1))
    assert c.fill.tolist() == [[1.0]]


def test_class_factors_only_for_high_targets_and_clipped():
    f = calibrate.class_factors(
        np.asarray([0.01, 0.01, 0.02, 0.0]),
        np.asarray([0.05, 0.03, 0.04, 0.0]),
        ["A", "A", "B", "C"],
        {"A": 0.99, "B": 0.97, "C": 0.95},
    )
    assert f == {"A": calibrate.MAX_FACTOR, "B": 1.0, "C": 1.0}
    g = calibrate.class_factors(
        np.asarray([0.02]), np.asarray([0.01]), ["A"], {"A": 0.99}
    )
    assert g == {"A": 1.0}  # never lowers a plan


def test_middle_class_calibrated_relative_to_the_lowest_hand_computed():
    # realized/planned per class: A 0.02/0.01 = 2, B 0.06/0.02 = 3, C 0.06/0.04 = 1.5
    planned = np.asarray([0.01, 0.02, 0.04])
    realized = np.asarray([0.02, 0.06, 0.06])
    targets = {"A": 0.99, "B": 0.97, "C": 0.95}
    f = calibrate.class_factors(planned, realized, ["A", "B", "C"], targets)
    assert f == {"A": 2.0, "B": 2.0, "C": 1.0}  # B: 3 / 1.5; C is the reference
    off = calibrate.class_factors(
        planned, realized, ["A", "B", "C"], targets, relative=False
    )
    assert off == {"A": 2.0, "B": 1.0, "C": 1.0}
    # B no worse than the reference: never lowered below 1
    g = calibrate.class_factors(
        np.asarray([0.02, 0.04]), np.asarray([0.02, 0.08]), ["B", "C"], targets
    )
    assert g == {"B": 1.0, "C": 1.0}
    # the lowest class present is the reference, whatever its name; alone it is not calibrated
    assert calibrate.class_factors(planned[1:2], realized[1:2], ["B"], targets) == {
        "B": 1.0
    }
    h = calibrate.class_factors(
        np.asarray([0.01, 0.02]), np.asarray([0.03, 0.02]), ["A", "B"], targets
    )
    assert h == {"A": 3.0, "B": 1.0}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2.0**64, 5e-324, 0.0])
def test_middle_class_factor_with_hostile_reference(bad):
    targets = {"A": 0.99, "B": 0.97, "C": 0.95}
    f = calibrate.class_factors(
        np.asarray([0.02, 0.04]), np.asarray([0.06, bad]), ["B", "C"], targets
    )
    # B's own ratio is 3; a reference that is no ratio (not finite) leaves B alone, one below
    # 1 counts as 1 (B keeps its own ratio), a huge one takes B's correction away
    assert f["C"] == 1.0
    expected = {2.0**64: 1.0, 5e-324: 3.0, 0.0: 3.0}.get(bad, 1.0)
    assert f["B"] == expected


def test_needs_backtest_every_class_when_relative():
    assert calibrate.needs_backtest(0.5)
    assert calibrate.needs_backtest(0.99)
    assert not calibrate.needs_backtest(0.97, relative=False)
    assert calibrate.needs_backtest(calibrate.MIN_TARGET, relative=False)


def test_shortfall_back_test_sees_a_part_that_outgrew_its_fit():
    rng = np.random.default_rng(3)
    steady = rng.poisson(10.0, (1, 120)).astype(np.float64)
    grew = steady.copy()
    grew[0, 80:] *= 3  # the held-out third triples
    planned, realized = calibrate.shortfall(
        np.concatenate([steady, grew]),
        np.asarray([[5.0, 5.0], [5.0, 5.0]]),
        0.99,
        np.asarray([70.0, 70.0]),
        np.random.default_rng(1),
    )
    assert realized[1] > 10 * max(planned[1], 1e-3)
    assert realized[1] > realized[0]


@st.composite
def _parts(draw):
    n = draw(st.integers(2, 6))
    m = 40
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 1.0, n)[:, None]
    shape = rng.uniform(0.3, 3.0, n)[:, None]
    lead = rng.integers(1, 15, n)[:, None]
    # lead-time demand: a binomial number of gamma lots; the next day: one more day's lot
    count = rng.binomial(lead, p, (n, m))
    x0 = np.round(rng.gamma(count * shape + 1e-9, 5.0)) * (count > 0)
    x1 = x0 + np.round(rng.gamma(shape, 5.0, (n, m))) * (rng.random((n, m)) < p)
    cost = rng.choice([0.1, 1.0, 5.0, 40.0], n)
    q = rng.choice([1.0, 5.0, 20.0], n)
    target = draw(st.sampled_from([0.8, 0.9, 0.95, 0.99]))
    floor = draw(st.floats(0.5, target))
    return x0, x1, q, cost, target, floor


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_parts(), st.sampled_from([0.0, 5.0, allocate.DEFAULT_BACKORDER_WEIGHT]))
def test_allocation_meets_class_target_floor_and_costs_no_more(parts, weight):
    x0, x1, q, cost, target, floor = parts
    n = x0.shape[0]
    a = allocate.allocate(
        x0,
        x1,
        q,
        cost,
        ["A"] * n,
        {"A": target},
        floor=floor,
        backorder_weight=weight,
    )
    c = allocate.curves(x0, x1, q)
    low = allocate.part_floors(c, min(floor, target))
    assert np.all(low <= min(floor, target) + 1e-12)
    assert np.all(a.targets >= low - 1e-9)
    s, fill = _plan_fill(x0, x1, a.targets, q)
    assert fill >= target - 1e-6
    flat = ltd.fill_rate_level(x0, x1, np.full(n, target), q)

    # what the plan minimises: stock value plus the weighted backlog, each at the part's value
    def objective(level):
        return float(cost @ (level + weight * ltd.expected_backlog(x0, level, q)))

    assert objective(s) <= objective(flat) * (1 + 1e-9) + 1e-9
