"""Empirical lead-time demand: bootstrap, fill-rate level by hand, method selection on a regular series."""

from __future__ import annotations

import numpy as np
import pytest

from jitstock.server.replenish import demand, forecast, ltd, policy


def test_fill_rate_level_on_a_hand_computed_distribution():
    # X uniform on {0, 10, 20, 30}, Q = 10, β = 0.95: allowed shortage 0.5 per cycle.
    # Short per cycle at s: E[min((X−s)⁺, Q)].  s = 20: (0+0+0+10)/4 = 2.5 > 0.5;
    # s = 28: (2)/4 = 0.5 -> the smallest s meeting it is 28.
    x = np.array([[0.0, 10.0, 20.0, 30.0]])
    assert float(ltd.expected_shortage(x, np.array([20.0]), np.array([10.0]))[0]) == 2.5
    s = float(ltd.fill_rate_level(x, np.array([0.95]), np.array([10.0]))[0])
    assert s == pytest.approx(28.0, abs=1e-6)
    assert float(ltd.quantile(x, 0.75)[0]) == 20.0


def test_block_bootstrap_sums_windows_of_observed_lead_times():
    # history 1,2,3,4; lead time always 2 days: windows sum to 3, 5 or 7
    rng = np.random.default_rng(0)
    draws = ltd.block_bootstrap(
        np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([[2.0, np.nan]]), rng, 300
    )
    assert set(np.unique(draws).tolist()) == {3.0, 5.0, 7.0}


def test_empirical_reorder_point_covers_a_lumpy_tail_the_normal_misses():
    rng = np.random.default_rng(5)
    occurs = rng.random(180) < 0.1
    hist = np.where(occurs, np.round(rng.gamma(0.7, 100 / 0.7, 180)), 0.0)
    lead = np.full((1, 8), 5.0)
    draws = ltd.block_bootstrap(hist[None, :], lead, rng)
    d, sd = hist.mean(), hist.std(ddof=1)
    x = policy.PolicyInputs(d, sd, 5.0, 0.0, 0.99)
    normal = policy.compute(x)
    emp = policy.compute(policy.PolicyInputs(d, sd, 5.0, 0.0, 0.99, ltd_samples=draws))
    # the level solved on the draws meets 99 % fill on them; SS = that level − their mean
    q = np.asarray(emp.order_qty).ravel()
    level = ltd.fill_rate_level(draws, np.array([0.99]), q)
    assert ltd.expected_shortage(draws, level, q).item() <= 0.01 * q.item() + 1e-6
    assert np.asarray(emp.safety_stock).item() == pytest.approx(
        level.item() - draws.mean(), rel=1e-9
    )
    # the lumpy tail needs more than the normal curve's safety stock
    assert np.asarray(emp.safety_stock).item() > np.asarray(normal.safety_stock).item()


def test_method_selection_picks_ses_for_a_regular_series():
    y = np.tile([2.0, 0.0], 60)[None, :]  # 2 every other day
    code = demand.classify_codes(y)
    assert int(code[0]) == demand.INTERMITTENT
    fit = forecast.fit(y, code)
    assert forecast.METHODS[int(fit.method[0])] == "ses"
    assert float(fit.rate[0]) == pytest.approx(1.0, abs=0.03)  # not SBA's 0.886


def test_undershoot_draws_are_size_biased_with_the_renewal_mean():
    # picks 1 and 9: the crossing pick is the 9 nine times in ten; E[U] = E[X²]/2E[X] = 4.1
    y = np.array([[1.0, 9.0, 0.0], [5.0, 5.0, 0.0], [0.0, 0.0, 0.0]])
    u = ltd.undershoot_draws(y, np.random.default_rng(0), 100_000)
    assert u.mean(axis=1) == pytest.approx(demand.undershoot(y), abs=0.05)
    assert u.max() <= 9.0
