"""SES, Croston–SBA and TSB on short series computed by hand; fitting and blending."""

from __future__ import annotations

import numpy as np
import pytest

from jitstock.server.replenish import forecast
from jitstock.server.replenish.demand import INTERMITTENT, SMOOTH

SPARSE = np.array([0.0, 3.0, 0.0, 0.0, 6.0, 0.0, 2.0])


def test_ses_by_hand():
    # start = mean(2, 4, 6) = 4; then 4 + .5(2-4) = 3; 3 + .5(4-3) = 3.5; 3.5 + .5(6-3.5) = 4.75
    f = forecast.ses(np.array([2.0, 4.0, 6.0]), 0.5)
    assert f[0].tolist() == pytest.approx([4.0, 3.0, 3.5, 4.75])


def test_sba_by_hand():
    # first demand in period 2 (1-based): z=3, p=2 -> 0.9·3/2 = 1.35
    # period 5: y=6, interval 3: z = 3+.2(6-3) = 3.6, p = 2+.2(3-2) = 2.2 -> 0.9·3.6/2.2
    # period 7: y=2, interval 2: z = 3.6+.2(2-3.6) = 3.28, p = 2.2+.2(2-2.2) = 2.16
    f = forecast.croston_sba(SPARSE, 0.2)
    a = 0.9 * 3.6 / 2.2
    assert f[0].tolist() == pytest.approx(
        [0, 0, 1.35, 1.35, 1.35, a, a, 0.9 * 3.28 / 2.16]
    )
    assert f[0, -1] == pytest.approx(1.3666667, abs=1e-6)


def test_tsb_by_hand_decays_while_nothing_is_used():
    # start: z=3, p=1/2; zeros: p ← .9p; demand 6: z=3.6, p = .405+.1(1-.405) = .4645
    f = forecast.tsb(SPARSE, 0.2, 0.1)
    assert f[0, 2:5].tolist() == pytest.approx([1.5, 1.35, 1.215])
    assert f[0, 5] == pytest.approx(3.6 * 0.4645)
    dead = forecast.tsb(np.r_[np.full(20, 5.0), np.zeros(60)], 0.2, 0.1)
    assert dead[0, -1] < 0.01 * 5  # an obsolete part's forecast goes to zero


def test_rows_are_independent_series():
    y = np.vstack([SPARSE, SPARSE * 2])
    f = forecast.croston_sba(y, np.array([0.2, 0.2]))
    assert f[1] == pytest.approx(2 * f[0])


def test_fit_chooses_the_class_method_and_tracks_the_level():
    rng = np.random.default_rng(1)
    smooth = rng.poisson(20, 120).astype(float)
    sparse = np.where(rng.random(120) < 0.25, rng.poisson(8, 120), 0).astype(float)
    fit = forecast.fit(np.vstack([smooth, sparse]), np.array([SMOOTH, INTERMITTENT]))
    assert forecast.METHODS[fit.method[0]] == "ses"
    # sparse rows: SES, SBA or TSB, whichever forecasts the next week's total best
    method = forecast.METHODS[fit.method[1]]
    assert fit.rate[0] == pytest.approx(20, rel=0.15)
    # the chosen method's parameters minimise its one-step error over the grid
    for a in forecast.ALPHAS:
        if method == "sba":
            assert (
                fit.mse[1] <= forecast.mse(sparse, forecast.croston_sba(sparse, a))[0]
            )
        if method == "ses":
            assert fit.mse[1] <= forecast.mse(sparse, forecast.ses(sparse, a))[0]
        for b in forecast.BETAS:
            if method == "tsb":
                assert fit.mse[1] <= forecast.mse(sparse, forecast.tsb(sparse, a, b))[0]
    assert 0.5 * sparse.mean() < fit.rate[1] < 2 * sparse.mean()
    assert fit.sigma[0] == pytest.approx(np.sqrt(20), rel=0.25)


def test_blend_starts_at_the_prior_and_fades_it():
    r0, _, w0 = forecast.blend(
        np.array(0.0), np.array(0.0), np.array(0.0), np.array(10.0), np.array(np.nan)
    )
    r14, _, w14 = forecast.blend(
        np.array(30.0), np.array(3.0), np.array(14.0), np.array(10.0), np.array(np.nan)
    )
    r_none, _, w_none = forecast.blend(
        np.array(30.0), np.array(3.0), np.array(2.0), np.array(np.nan), np.array(np.nan)
    )
    assert (float(r0), float(w0)) == (10.0, 0.0)
    assert (float(r14), float(w14)) == (20.0, 0.5)
    assert (float(r_none), float(w_none)) == (30.0, 1.0)
