"""Forecasters per demand class: SES, Croston–SBA and TSB, fitted on the bin's own history.

Every function works on a (n, T) array, one series per row (a 1-D series is
one row), so fitting a thousand SKUs is a loop over periods, not over SKUs.
``forecasts`` arrays have T+1 columns: column t is the forecast of period t
made after period t-1; the last column is the forecast for the next period.

- SES (smooth, erratic): f ← f + α(y − f).
- SBA (intermittent, lumpy): Croston's size z and interval p, both smoothed
  with α when a demand occurs; forecast (1 − α/2)·z/p (Syntetos & Boylan 2005).
- TSB (intermittent, lumpy, dying parts): size z smoothed with α on demand,
  demand probability p smoothed with β every period, forecast p·z; p decays
  while nothing is used, so an obsolete part's forecast goes to zero.

Parameters come from a grid, chosen per series by the lowest mean squared
one-step-ahead error after a warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from jitstock.server.replenish.demand import ERRATIC, SMOOTH

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

METHODS = ("ses", "sba", "tsb")
SES, SBA, TSB = range(3)
# Smoothing constants tried per series: the usual 0.05–0.5 range of the literature.
ALPHAS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
BETAS = (0.02, 0.05, 0.1, 0.2, 0.3)
# Methods are compared on the total of this many periods ahead (about a lead time).
SELECTION_HORIZON = 7
# Periods whose errors are ignored while the initial values settle.
WARMUP_PERIODS = 7
# SES starts from the mean of this many first periods: two weeks, balanced for weekly
# and every-other-day patterns alike (7 days of "2, 0, 2, …" would start 14 % high).
SES_INIT_PERIODS = 14
# A new bin's own estimate gets weight n / (n + PRIOR_WEIGHT_DAYS) against its prior.
PRIOR_WEIGHT_DAYS = 14.0


def _rows(y: FloatArray) -> FloatArray:
    return np.atleast_2d(np.asarray(y, dtype=np.float64))


def _param(value: float | FloatArray, n: int) -> FloatArray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()


def ses(y: FloatArray, alpha: float | FloatArray) -> FloatArray:
    """Simple exponential smoothing: one-step forecasts, shape (n, T+1)."""
    y = _rows(y)
    n, t_len = y.shape
    a = _param(alpha, n)
    out = np.empty((n, t_len + 1))
    f = y[:, :SES_INIT_PERIODS].mean(axis=1) if t_len else np.zeros(n)
    for t in range(t_len):
        out[:, t] = f
        f = f + a * (y[:, t] - f)
    out[:, t_len] = f
    return out


def _first_demand(y: FloatArray) -> IntArray:
    nz = y > 0
    first = np.where(nz.any(axis=1), nz.argmax(axis=1), y.shape[1])
    return np.asarray(first, dtype=np.int64)


def croston_sba(y: FloatArray, alpha: float | FloatArray) -> FloatArray:
    """Croston with the Syntetos–Boylan correction: one-step forecasts, shape (n, T+1).

    Starts at the first demand (size z = that demand, interval p = its period
    number, 1-based); the forecast is 0 before it.
    """
    y = _rows(y)
    n, t_len = y.shape
    a = _param(alpha, n)
    first = _first_demand(y)
    out = np.zeros((n, t_len + 1))
    z = np.zeros(n)
    p = np.ones(n)
    last = np.full(n, -1, dtype=np.int64)  # period of the last demand (-1: none yet)
    started = np.zeros(n, dtype=bool)
    for t in range(t_len):
        out[:, t] = np.where(started, (1 - a / 2) * z / p, 0.0)
        yt = y[:, t]
        init = first == t
        upd = started & (yt > 0)
        q = (t - last).astype(np.float64)
        z = np.where(init, yt, np.where(upd, z + a * (yt - z), z))
        p = np.where(init, t + 1.0, np.where(upd, p + a * (q - p), p))
        last = np.where(init | upd, t, last)
        started |= init
    out[:, t_len] = np.where(started, (1 - a / 2) * z / p, 0.0)
    return out


def tsb(
    y: FloatArray, alpha: float | FloatArray, beta: float | FloatArray
) -> FloatArray:
    """Teunter–Syntetos–Babai: one-step forecasts p·z, shape (n, T+1).

    Starts at the first demand (z = that demand, p = 1 / its 1-based period number).
    """
    y = _rows(y)
    n, t_len = y.shape
    a = _param(alpha, n)
    b = _param(beta, n)
    first = _first_demand(y)
    out = np.zeros((n, t_len + 1))
    z = np.zeros(n)
    p = np.zeros(n)
    started = np.zeros(n, dtype=bool)
    for t in range(t_len):
        out[:, t] = np.where(started, p * z, 0.0)
        yt = y[:, t]
        occurred = yt > 0
        init = first == t
        z = np.where(init, yt, np.where(started & occurred, z + a * (yt - z), z))
        p = np.where(
            init, 1.0 / (t + 1.0), np.where(started, p + b * (occurred - p), p)
        )
        started |= init
    out[:, t_len] = np.where(started, p * z, 0.0)
    return out


def mse(
    y: FloatArray, forecasts: FloatArray, warmup: int = WARMUP_PERIODS
) -> FloatArray:
    """Mean squared one-step error per row, ignoring the first ``warmup`` periods."""
    y = _rows(y)
    err = y[:, warmup:] - forecasts[:, warmup : y.shape[1]]
    if err.shape[1] == 0:
        return np.zeros(y.shape[0])
    return np.asarray((err**2).mean(axis=1), dtype=np.float64)


def horizon_mse(
    y: FloatArray,
    forecasts: FloatArray,
    horizon: int = SELECTION_HORIZON,
    warmup: int = WARMUP_PERIODS,
) -> FloatArray:
    """Mean squared error of the forecast total of the next ``horizon`` periods, per row."""
    y = _rows(y)
    t_len = y.shape[1]
    cs = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(y, axis=1)], axis=1)
    starts = np.arange(warmup, t_len - horizon + 1)
    if starts.size == 0:
        return mse(y, forecasts, warmup)
    actual = cs[:, starts + horizon] - cs[:, starts]
    err = actual - horizon * forecasts[:, starts]
    return np.asarray((err**2).mean(axis=1), dtype=np.float64)


@dataclass(slots=True, frozen=True)
class Fit:
    """Chosen forecaster per row: next-period rate, σ of one-step errors and parameters."""

    rate: FloatArray
    sigma: FloatArray
    method: IntArray
    alpha: FloatArray
    beta: FloatArray
    mse: FloatArray


def _best_ses(y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = y.shape[0]
    g = len(ALPHAS)
    ys = np.repeat(y, g, axis=0)
    alphas = np.tile(np.asarray(ALPHAS), n)
    f = ses(ys, alphas)
    e = mse(ys, f).reshape(n, g)
    k = e.argmin(axis=1)
    rows = np.arange(n) * g + k
    return f[rows], np.asarray(ALPHAS)[k], e[np.arange(n), k]


def _best_sba(y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = y.shape[0]
    g = len(ALPHAS)
    ys = np.repeat(y, g, axis=0)
    alphas = np.tile(np.asarray(ALPHAS), n)
    f = croston_sba(ys, alphas)
    e = mse(ys, f).reshape(n, g)
    k = e.argmin(axis=1)
    rows = np.arange(n) * g + k
    return f[rows], np.asarray(ALPHAS)[k], e[np.arange(n), k]


def _best_tsb(y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    n = y.shape[0]
    grid = [(a, b) for a in ALPHAS for b in BETAS]
    g = len(grid)
    ys = np.repeat(y, g, axis=0)
    alphas = np.tile(np.asarray([a for a, _ in grid]), n)
    betas = np.tile(np.asarray([b for _, b in grid]), n)
    f = tsb(ys, alphas, betas)
    e = mse(ys, f).reshape(n, g)
    k = e.argmin(axis=1)
    rows = np.arange(n) * g + k
    pa = np.asarray([a for a, _ in grid])[k]
    pb = np.asarray([b for _, b in grid])[k]
    return f[rows], pa, pb, e[np.arange(n), k]


def fit(y: FloatArray, classes: IntArray) -> Fit:
    """Fit each row with its class's forecasters and keep the one with the lowest error.

    Smooth and erratic rows use SES; intermittent and lumpy rows the best of
    SES, SBA and TSB by one-step-ahead (out-of-sample) error — a regular
    series such as "2 every other day" then keeps SES's unbiased 1.0 instead
    of SBA's (1 − α/2)-deflated 0.886.  σ is the root mean squared one-step error of the chosen fit
    (the per-period demand uncertainty the safety stock must cover).
    """
    y = _rows(y)
    n = y.shape[0]
    codes = np.broadcast_to(np.asarray(classes, dtype=np.int64), (n,))
    rate = np.zeros(n)
    err = np.zeros(n)
    method = np.zeros(n, dtype=np.int64)
    alpha = np.zeros(n)
    beta = np.zeros(n)
    continuous = (codes == SMOOTH) | (codes == ERRATIC)
    if continuous.any():
        f, a, e = _best_ses(y[continuous])
        rate[continuous], alpha[continuous], err[continuous] = f[:, -1], a, e
        method[continuous] = SES
    sparse = ~continuous
    if sparse.any():
        ys = y[sparse]
        f0, a0, e0 = _best_ses(ys)
        f1, a1, e1 = _best_sba(ys)
        f2, a2, b2, e2 = _best_tsb(ys)
        # chosen by the error of the demand over the next SELECTION_HORIZON periods:
        # a bias that one-step errors hide adds up there; ties go to SES, then SBA
        h = np.stack([horizon_mse(ys, f) for f in (f0, f1, f2)])
        best = np.argmin(h, axis=0)
        rate[sparse] = np.choose(best, [f0[:, -1], f1[:, -1], f2[:, -1]])
        alpha[sparse] = np.choose(best, [a0, a1, a2])
        beta[sparse] = np.where(best == TSB, b2, 0.0)
        err[sparse] = np.choose(best, [e0, e1, e2])
        method[sparse] = best
    return Fit(np.maximum(rate, 0.0), np.sqrt(err), method, alpha, beta, err)


def blend(
    rate: FloatArray,
    sigma: FloatArray,
    days: FloatArray,
    prior_rate: FloatArray,
    prior_sigma: FloatArray,
    weight_days: float = PRIOR_WEIGHT_DAYS,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Blend a young bin's own estimate with its prior (NaN prior: no blending).

    Returns (rate, sigma, weight of the bin's own data); the weight grows as
    days / (days + weight_days), so the prior fades as history arrives.
    """
    d = np.asarray(days, dtype=np.float64)
    w = d / (d + weight_days)
    pr = np.asarray(prior_rate, dtype=np.float64)
    ps = np.asarray(prior_sigma, dtype=np.float64)
    has = ~np.isnan(pr)
    w = np.where(has, w, 1.0)
    pr = np.where(has, pr, 0.0)
    # a prior without its own σ: Poisson-like, σ² = rate
    ps = np.where(np.isnan(ps), np.sqrt(np.maximum(pr, 0.0)), ps)
    r = w * rate + (1 - w) * pr
    s = np.sqrt(w * sigma**2 + (1 - w) * ps**2)
    return r, s, w
