"""The lumpy group's calibration: its back-test ratio over its class rest's, and the allocation aiming it higher."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitstock.server.replenish import allocate, calibrate
from jitstock.server.replenish.policy import SERVICE_LEVEL_RANGE
from tests.server.replenish.test_allocate import (
    TINY_Q,
    _one_lumpy_two_smooth,
    _parts,
    _plan_fill,
)


def test_group_factors_hand_computed():
    # A: lumpy 0.08/0.02 = 4 against the rest's 0.04/0.02 = 2 -> 2
    # B: lumpy 0.03/0.02 = 1.5 against 0.06/0.02 = 3 -> 0.5, never below 1
    # C: lumpy 0.2/0.01 = 20 against 0.01/0.01 = 1 -> clipped to MAX_FACTOR
    f = calibrate.group_factors(
        np.asarray([0.01, 0.01, 0.02, 0.01]),
        np.asarray([0.03, 0.05, 0.03, 0.2]),
        ["A", "A", "B", "C"],
        np.asarray([0.02, 0.02, 0.01]),
        np.asarray([0.04, 0.06, 0.01]),
        ["A", "B", "C"],
    )
    assert f == {"A": 2.0, "B": 1.0, "C": calibrate.MAX_FACTOR}


@pytest.mark.parametrize(
    ("planned", "realized", "rest_planned", "rest_realized"),
    [
        ([0.0], [0.5], [0.01], [0.02]),  # the group planned no shortage
        ([0.01], [0.5], [0.0], [0.02]),  # the rest planned none
        ([0.01], [0.5], [0.01], [0.0]),  # the rest had none: no reference
        ([0.01], [np.nan], [0.01], [0.02]),
        ([0.01], [np.inf], [0.01], [0.02]),
        ([5e-324], [2.0**63], [0.01], [0.02]),
        ([np.nan], [0.5], [0.01], [0.02]),
    ],
)
def test_group_factors_without_a_usable_ratio_are_one(
    planned, realized, rest_planned, rest_realized
):
    f = calibrate.group_factors(
        np.asarray(planned, np.float64),
        np.asarray(realized, np.float64),
        ["A"],
        np.asarray(rest_planned, np.float64),
        np.asarray(rest_realized, np.float64),
        ["A"],
    )
    assert f == {"A": 1.0}
    assert (
        calibrate.group_factors(
            np.zeros(0), np.zeros(0), [], np.zeros(0), np.zeros(0), []
        )
        == {}
    )
    # no rest of the class at all: no reference either
    lone = calibrate.group_factors(
        np.asarray([0.01]), np.asarray([0.05]), ["B"], np.zeros(0), np.zeros(0), []
    )
    assert lone == {"B": 1.0}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_parts(), st.floats(1.0, 4.0))
def test_a_calibrated_lumpy_group_meets_its_raised_target(parts, factor):
    """The lumpy group aims at 1 − (1 − β)/f, the class still at β; f only raises the group."""
    x0, x1, q, cost, target, floor, lumpy = parts
    n = x0.shape[0]
    kw = {"floor": floor, "backorder_weight": 0.0, "lumpy": lumpy}
    plain = allocate.allocate(x0, x1, q, cost, ["A"] * n, {"A": target}, **kw)
    a = allocate.allocate(
        x0, x1, q, cost, ["A"] * n, {"A": target}, **kw, lumpy_calibration={"A": factor}
    )
    _, fill = _plan_fill(x0, x1, a.targets, q)
    assert fill >= target - 1e-6
    if lumpy.any() and not a.uniform["A"]:
        aim = min(1 - (1 - target) / factor, SERVICE_LEVEL_RANGE[1])
        k = int(lumpy.sum())
        xs = (x0[lumpy], x1[lumpy])
        _, group = _plan_fill(*xs, a.targets[lumpy], q[lumpy])
        # every lumpy part at the top of its grid is as far as the group can be raised
        _, top = _plan_fill(*xs, np.full(k, SERVICE_LEVEL_RANGE[1]), q[lumpy])
        assert group >= min(aim, top) - 1e-6
    if not lumpy.any():
        assert a.targets == pytest.approx(plain.targets)


@pytest.mark.parametrize("factor", [np.nan, np.inf, -np.inf, 0.0, -2.0, 5e-324, 1.0])
def test_an_unusable_lumpy_factor_changes_nothing(factor):
    x0, x1 = _one_lumpy_two_smooth()
    q = np.full(3, TINY_Q)
    kw = {"floor": 0.5, "backorder_weight": 0.0, "lumpy": [False, False, True]}
    base = allocate.allocate(x0, x1, q, np.ones(3), ["A"] * 3, {"A": 0.9}, **kw)
    got = allocate.allocate(
        x0,
        x1,
        q,
        np.ones(3),
        ["A"] * 3,
        {"A": 0.9},
        **kw,
        lumpy_calibration={"A": factor},
    )
    assert got.targets == pytest.approx(base.targets)
    assert got.multipliers == base.multipliers
