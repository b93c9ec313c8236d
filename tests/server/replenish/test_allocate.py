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


def _total(x0, x1, s, q, cost):
    """Independent check: holding 25 %/year plus backorders 10 %/day of value, a day's waiting."""
    short = ltd.daily_shortage(x0, x1, s, q)
    return float((cost * (0.25 / 365 * s + 0.10 * short)).sum())


def _steps() -> allocate.Curves:
    """Two parts on s = 0, 10, 20, one unit a day each, values 1 and 10.

    Part 1 fills 0.5, 0.8, 1.0; part 2 0.5, 0.9, 1.0.  A step of Δs = 10
    cutting the shortage by d is worth keeping while (0.1·c + λ)·d exceeds
    its holding c·(0.25/365)·10, i.e. while λ > c·(0.25/36.5/d − 0.1).
    """
    s = np.tile([0.0, 10.0, 20.0], (2, 1))
    fill = np.asarray([[0.5, 0.8, 1.0], [0.5, 0.9, 1.0]])
    return allocate.Curves(s, fill, np.ones(2), fill.copy())


def test_total_cost_choice_and_the_band_hand_computed():
    """Thresholds of λ (_steps): part 1's top step (d = 0.2) goes at
    0.25/36.5/0.2 − 0.1 = −0.065753, its first (d = 0.3) at −0.077169;
    part 2's (value 10) at 10·(0.25/36.5/0.1 − 0.1) = −0.315068 and
    −0.828767.  At λ = 0 both parts keep every step (fill 1.0 each).  A
    class target of 0.9 with a band of 0.3 pt ([0.9, 0.903]) is passed at
    λ = 0, so λ goes negative to the value nearest 0 that sheds down to
    the band: just below −0.065753, part 1 at 0.8 and part 2 at 1.0 — the
    dear part keeps its fill (a unit short of it costs ten times as much).
    """
    c = _steps()
    cost = np.asarray([1.0, 10.0])
    fl = np.full(2, 0.5)
    assert allocate.part_targets(c, cost, 0.0, 0.5) == pytest.approx([1.0, 1.0])
    assert allocate.part_targets(c, cost, -0.07, 0.5) == pytest.approx([0.8, 1.0])
    assert allocate.part_targets(c, cost, -0.08, 0.5) == pytest.approx([0.5, 1.0])
    assert allocate.part_targets(c, cost, -0.5, 0.5) == pytest.approx([0.5, 0.9])
    lam, idx = allocate._solve_class(c, cost, 0.9, fl, 0.903)
    assert lam == pytest.approx(0.25 / 36.5 / 0.2 - 0.1, rel=1e-6)
    assert lam < 0.25 / 36.5 / 0.2 - 0.1
    assert c.fill[[0, 1], idx].tolist() == [0.8, 1.0]
    # a class target of 0.97: λ = 0 leaves it at 1.0 (above 0.973); shedding part 1's top
    # step gives 0.9 < 0.97, so the plan keeps the choice above the band (meets β first)
    lam, idx = allocate._solve_class(c, cost, 0.97, fl, 0.973)
    assert c.fill[[0, 1], idx].tolist() == [1.0, 1.0]
    # a target the free choice falls short of: top steps of d = 0.05 are dearer than their
    # backorders at λ = 0 (0.25/36.5/0.05 − 0.1 = 0.036986 > 0), fills 0.8 and 0.75; the
    # class target 0.79 needs part 1's (value 1) top step, bought once λ > 0.036986 — part
    # 2's (value 10) would need λ > 0.36986
    c2 = allocate.Curves(
        c.s, np.asarray([[0.5, 0.8, 0.85], [0.5, 0.75, 0.8]]), np.ones(2), c.fill
    )
    lam, idx = allocate._solve_class(c2, cost, 0.79, fl, 0.793)
    assert lam == pytest.approx(0.25 / 36.5 / 0.05 - 0.1, rel=1e-6)
    assert c2.fill[[0, 1], idx].tolist() == [0.85, 0.75]


def test_total_cost_allocation_on_draws_meets_target_within_band():
    """Costs 1 and 4, class target 80 %, floor 50 % (LEAD draws, hand fills above).

    At λ = 0 a unit short costs 0.1/(0.25/365) = 146 units held a day, so both
    parts would go to the top (0.9999); the band sheds the cheap part first.
    The draws' grid of s gives part 1 fills 0.5001, 0.5376, 0.6251, 0.7126,
    0.7501, ... — 0.7126 with the dear part at 0.9999 is 0.856; the next step
    down (0.6251 → 0.8125) already passes under 0.8, so the plan stays at
    0.856 and the dear part keeps its fill.
    """
    x0, x1 = _two_parts()
    q = np.full(2, TINY_Q)
    cost = np.asarray([1.0, 4.0])
    a = allocate.allocate(x0, x1, q, cost, ["A", "A"], {"A": 0.8}, floor=0.5)
    assert a.targets == pytest.approx([0.7126, 0.9999], abs=2e-4)
    assert a.multipliers["A"] < 0
    assert a.planned_fill["A"] >= 0.8
    s, fill = _plan_fill(x0, x1, a.targets, q)
    assert fill >= 0.8 - 1e-6
    flat = ltd.fill_rate_level(x0, x1, np.full(2, 0.8), q)
    assert _total(x0, x1, s, q, cost) <= _total(x0, x1, flat, q, cost)


def test_floor_keeps_a_cheap_part_from_being_given_up():
    # on _steps' curves (cycle service = fill, so the fill floor binds) λ = −0.08 sheds
    # part 1 to 0.5; a floor of 0.8 holds it at 0.8, one of 0.85 lifts it to the next point
    c = _steps()
    cost = np.asarray([1.0, 10.0])
    assert allocate.part_targets(c, cost, -0.08, 0.5) == pytest.approx([0.5, 1.0])
    assert allocate.part_targets(c, cost, -0.08, 0.8) == pytest.approx([0.8, 1.0])
    assert allocate.part_targets(c, cost, -0.08, 0.85) == pytest.approx([1.0, 1.0])
    # on the draws: a floor above the class target is lowered to the class target (0.6,
    # met as cycle service at s = 1, fill ½, on the grid 0.500125), which the cheap part
    # then sits at while the dear one carries the class
    x0, x1 = _two_parts()
    q = np.full(2, TINY_Q)
    capped = allocate.allocate(
        x0, x1, q, np.asarray([1.0, 100.0]), ["C", "C"], {"C": 0.6}, floor=0.9
    )
    floors = allocate.part_floors(allocate.curves(x0, x1, q), 0.6)
    assert floors == pytest.approx([0.5, 0.5], abs=2e-4)
    assert capped.targets[0] == pytest.approx(0.500125, abs=1e-6)
    assert capped.targets[1] > capped.targets[0]
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
    c = allocate.Curves(s, fill, np.ones(3), cycle)
    assert allocate.part_floors(c, 0.9) == pytest.approx([0.7, 0.9, 0.4])
    # with a λ that makes s = 0 the free choice (shortage paid for), the floors still bind
    t = allocate.part_targets(c, np.ones(3), -1e3, 0.9)
    assert t == pytest.approx([0.7, 0.93, 0.4])


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
@given(_parts())
def test_allocation_meets_class_target_floor_and_costs_no_more(parts):
    x0, x1, q, cost, target, floor = parts
    n = x0.shape[0]
    a = allocate.allocate(x0, x1, q, cost, ["A"] * n, {"A": target}, floor=floor)
    c = allocate.curves(x0, x1, q)
    low = allocate.part_floors(c, min(floor, target))
    assert np.all(low <= min(floor, target) + 1e-12)
    assert np.all(a.targets >= low - 1e-9)
    s, fill = _plan_fill(x0, x1, a.targets, q)
    assert fill >= target - 1e-6
    flat = ltd.fill_rate_level(x0, x1, np.full(n, target), q)
    assert (
        _total(x0, x1, s, q, cost) <= _total(x0, x1, flat, q, cost) * (1 + 1e-6) + 1e-9
    )
