"""Lead-time demand draws: the daily fill-rate solve by hand and against a simulation, block and
compound draws, method selection, hostile histories."""

from __future__ import annotations

import numpy as np
import pytest

from jitstock.server.replenish import demand, forecast, ltd, policy


def test_fill_rate_level_on_a_hand_computed_case():
    # Nothing is used during the lead time, the day after it uses 10; Q = 10.  The position
    # after an order is uniform on (s, s + 10], so at s = 0 the day is short 10 − Y: 5 a day,
    # fill 50 %.  For 95 % the day may be short 0.5: ((10 − s)²)/20 = 0.5 -> s = 10 − √10.
    x0 = np.zeros((1, 4))
    x1 = np.full((1, 4), 10.0)
    q = np.array([10.0])
    assert ltd.daily_shortage(x0, x1, np.array([0.0]), q).item() == 5.0
    s = ltd.fill_rate_level(x0, x1, np.array([0.95]), q).item()
    assert s == pytest.approx(10 - np.sqrt(10), abs=1e-6)
    # the empirical quantile is the lower one: 0.75 of {0, 10, 20, 30} is 20
    assert ltd.quantile(np.array([[0.0, 10.0, 20.0, 30.0]]), 0.75).item() == 20.0


def test_solved_level_gives_the_target_fill_in_a_simulation():
    # 5-day lead time, a part used on 20 % of days in gamma(0.7) lots (lumpy), Q = a week:
    # the level solved on the draws of a long history gives ≈ 97 % fill on fresh demand
    rng = np.random.default_rng(11)

    def lumpy(days: int) -> np.ndarray:
        lots = np.round(rng.gamma(0.7, 50 / 0.7, days))
        return np.where(rng.random(days) < 0.2, lots, 0.0)

    hist = lumpy(20_000)[None, :]
    x0, x1 = ltd.block_bootstrap(hist, np.full((1, 1), 5.0), rng, 20_000)
    q = np.array([70.0])
    s = float(np.ceil(ltd.fill_rate_level(x0, x1, np.array([0.97]), q).item()))
    on_hand, pipe, served, total = s + q.item(), {}, 0.0, 0.0
    on_order, backlog = 0.0, 0.0
    for t, d in enumerate(lumpy(60_000)):
        got = min(on_hand, d)
        on_hand -= got
        backlog += d - got
        served, total = served + got, total + d
        arrived = pipe.pop(t, 0.0)
        on_hand += arrived
        on_order -= arrived
        late = min(on_hand, backlog)
        on_hand, backlog = on_hand - late, backlog - late
        position = on_hand + on_order - backlog
        if position <= s:
            n = max(1, int(np.ceil((s - position + 1) / q.item())))
            pipe[t + 5] = pipe.get(t + 5, 0.0) + n * q.item()
            on_order += n * q.item()
    assert served / total == pytest.approx(0.97, abs=0.005)


def test_block_bootstrap_sums_windows_and_one_day_more():
    # history 1,2,3,4; lead time 2 days: windows [1,2] or [2,3] (room for the day after),
    # so (X_L+1 − X_L)/X_L is 3/3 or 4/5; every draw scaled by the same level draw
    rng = np.random.default_rng(0)
    x0, x1 = ltd.block_bootstrap(
        np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([[2.0, np.nan]]), rng, 20_000
    )
    ratios = np.round((x1 - x0) / x0, 9)
    assert set(np.unique(ratios).tolist()) == {0.8, 1.0}
    # the level draw is centred on the window's own level: mean of (3 + 5)/2
    assert x0.mean() == pytest.approx(4.0, rel=0.02)


def test_compound_draws_reach_past_the_largest_lot_seen():
    # six lots of 100 in 120 days: p ≈ (6 + ½)/121, lots ~ 100 on average
    hist = np.zeros((1, 120))
    hist[0, ::20] = [60.0, 80.0, 100.0, 100.0, 120.0, 140.0]
    rng = np.random.default_rng(4)
    x0, x1 = ltd.compound_draws(hist, np.full((1, 1), 10.0), rng, 40_000)
    assert x0.mean() == pytest.approx(10 * 6.5 / 121 * 100, rel=0.05)
    # the block bootstrap can never show a day above 140; the fitted model can
    assert (x1 - x0).max() > 140
    assert ((x1 - x0) > 140).mean() > 0.001


def test_method_selection_uses_the_compound_model_on_few_lumps():
    rng = np.random.default_rng(2)
    few = np.zeros(120)
    few[[5, 50, 90]] = [30.0, 200.0, 45.0]
    steady = rng.poisson(20.0, 120).astype(float)
    x0, x1, method = ltd.draws(
        np.stack([few, steady]), np.full((2, 3), 4.0), np.array([0.97, 0.97]), rng
    )
    assert ltd.METHODS[int(method[0])] == "compound"  # 3 days of demand: no block
    assert x0.shape == x1.shape == (2, ltd.DRAWS)
    assert (x1 >= x0).all()
    assert x0[1].mean() == pytest.approx(80.0, rel=0.1)


@pytest.mark.parametrize(
    "history",
    [
        np.array([np.nan, np.inf, -np.inf, -5.0, 2.0**63, 2.0**64, 5e-324, 3.0] * 15),
        np.array([1e308] * 120),
        np.zeros(120),
        np.zeros(0),
        np.array([np.nan] * 120),
    ],
)
@pytest.mark.parametrize(
    "leads", [[np.nan, np.nan], [np.inf, -3.0], [1e300, 2.0], [0.0, 0.0]]
)
def test_hostile_histories_and_lead_times_give_finite_levels(history, leads):
    rng = np.random.default_rng(1)
    x0, x1, _ = ltd.draws(history[None, :], np.array([leads]), 0.99, rng)
    assert np.isfinite(x0).all()
    assert np.isfinite(x1).all()
    s = ltd.fill_rate_level(x0, x1, np.array([0.99]), np.array([10.0]))
    assert np.isfinite(s).all()
    assert (s >= 0).all()
    p = policy.compute(
        policy.PolicyInputs(1.0, 1.0, 2.0, 0.5, 0.99, ltd_samples=(x0, x1))
    )
    assert np.isfinite(p.reorder_at).all()


def test_empirical_reorder_point_covers_a_lumpy_tail_the_normal_misses():
    rng = np.random.default_rng(5)
    occurs = rng.random(180) < 0.1
    hist = np.where(occurs, np.round(rng.gamma(0.7, 100 / 0.7, 180)), 0.0)
    x0, x1, _ = ltd.draws(hist[None, :], np.full((1, 8), 5.0), 0.99, rng)
    d, sd = hist.mean(), hist.std(ddof=1)
    normal = policy.compute(policy.PolicyInputs(d, sd, 5.0, 0.0, 0.99))
    emp = policy.compute(
        policy.PolicyInputs(d, sd, 5.0, 0.0, 0.99, ltd_samples=(x0, x1))
    )
    q = np.asarray(emp.order_qty).ravel()
    level = ltd.fill_rate_level(x0, x1, np.array([0.99]), q)
    day = (x1 - x0).mean()
    assert ltd.daily_shortage(x0, x1, level, q).item() <= 0.01 * day + 1e-6
    # solved on draws: no undershoot term (an order of whole Qs leaves the position above s)
    assert np.asarray(emp.undershoot).item() == 0.0
    # the lumpy tail needs more than the normal curve's safety stock
    assert np.asarray(emp.safety_stock).item() > np.asarray(normal.safety_stock).item()


def test_method_selection_picks_ses_for_a_regular_series():
    y = np.tile([2.0, 0.0], 60)[None, :]  # 2 every other day
    code = demand.classify_codes(y)
    assert int(code[0]) == demand.INTERMITTENT
    fit = forecast.fit(y, code)
    assert forecast.METHODS[int(fit.method[0])] == "ses"
    assert float(fit.rate[0]) == pytest.approx(1.0, abs=0.03)  # not SBA's 0.886
