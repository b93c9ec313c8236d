"""Lead-time demand from the data: an empirical distribution per bin, and the fill-rate reorder point on it.

The normal curve under-covers: on lumpy parts (LTD − d·L)/(√L·σ₁) spreads
1.34–1.41 instead of 1 (issue 15).  So lead-time demand is sampled:

- ``block``: the bin's own history summed over windows as long as a lead
  time drawn from the supplier item's observed lead times (a moving-block
  bootstrap: runs of idle days and lumps stay as they happened, and the
  lead-time spread enters through the drawn lengths), each draw scaled by a
  draw of the window's level (the level is an estimate too);
- ``compound``: a fitted model — each day has a lot with probability p, lots
  are gamma — with p drawn from its sampling distribution, so lots larger
  than any the window saw are reached.

Per bin the method with the lower out-of-sample loss wins (fitted on the
window's first two thirds, scored on the rest); a history with fewer than
``MIN_DEMAND_DAYS`` days of demand always uses the compound model.

The reorder point s is the smallest level whose expected shortage per day,
E[(X_L+1 − Y)⁺] − E[(X_L − Y)⁺] with the position Y after an order uniform
on (s, s + Q], is at most (1 − β) of a day's demand: the fill-rate target β
solved on the distribution itself rather than through a z.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Draws per bin: the 1 % tail of an A part then rests on a few dozen draws.
DRAWS = 400
# Fewer days with demand than this in the history: the block bootstrap has too few lumps to
# show a tail, so the compound model is used whatever the hold-out says.
MIN_DEMAND_DAYS = 10
# Bisection steps on s: 2⁻³⁰ of the largest draw is far below one unit.
SOLVE_STEPS = 30
# Lot-size gamma shapes are kept in this range: below it one lot dwarfs all others, above
# it the lots are as regular as a gamma fit can tell from a few dozen of them.
MIN_LOT_SHAPE, MAX_LOT_SHAPE = 0.2, 50.0
METHODS = ("block", "compound")
BLOCK, COMPOUND = range(2)
# Method selection fits on this share of the window and scores on the rest.
HOLDOUT_FIT = 2 / 3
# Quantile levels the held-out pinball loss is summed over (with the row's β): a grid over
# the upper half approximates the CRPS there, steadier than one tail quantile on a few lumps.
SCORE_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95)
# Hostile input bounds: a day's demand and a lead time beyond these are data errors, and
# squares of larger values would overflow the shortage sums.
MAX_DAILY = 1e12
MAX_LEAD_DAYS = 3650.0


def block_bootstrap(
    history: FloatArray,
    lead_days: FloatArray,
    rng: np.random.Generator,
    draws: int = DRAWS,
) -> tuple[FloatArray, FloatArray]:
    """Sums of the history over random windows of a drawn observed lead time L, and over L + 1 days.

    Returns (n, draws) twice: the window of L days and the same window one day
    longer (what the daily fill-rate solve needs, see ``daily_shortage``).
    ``lead_days`` is (n, k) NaN-padded; a row without any lead time gets 0-day
    windows.  Windows are clipped to the history's length.
    """
    y = np.atleast_2d(np.asarray(history, dtype=np.float64))
    n, t_len = y.shape
    lengths = np.minimum(_lead_lengths(lead_days, n, t_len, rng, draws), t_len - 1)
    lengths = np.maximum(lengths, 0)
    starts = (rng.random((n, draws)) * np.maximum(t_len - lengths, 1)).astype(np.int64)
    cs = np.concatenate([np.zeros((n, 1)), np.cumsum(y, axis=1)], axis=1)
    lo = np.take_along_axis(cs, starts, axis=1)
    hi = np.take_along_axis(cs, np.minimum(starts + lengths, t_len), axis=1)
    hi1 = np.take_along_axis(cs, np.minimum(starts + lengths + 1, t_len), axis=1)
    # the window's level is itself an estimate: scale each draw by a draw of it
    # (the sampling distribution of a mean of t_len days, as a gamma), predictive not plug-in
    m = y.mean(axis=1) if t_len else np.zeros(n)
    v = y.var(axis=1) if t_len else np.zeros(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where((m > 0) & (v > 0), t_len * m**2 / v, np.inf)
    a_safe = np.where(np.isfinite(a), a, 1.0)[:, None]
    w = np.where(
        np.isfinite(a)[:, None], rng.gamma(a_safe, 1.0, (n, draws)) / a_safe, 1.0
    )
    return np.asarray((hi - lo) * w, np.float64), np.asarray((hi1 - lo) * w, np.float64)


def _lots(x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per row: the count, mean and gamma shape (by moments) of the non-zero entries.

    Fewer than two lots, or lots all the same size, give shape 1 (exponential):
    a lot size seen once says nothing about its spread, so a wide one is assumed.
    """
    y = np.where(np.isfinite(x) & (x > 0), x, 0.0)
    nz = y > 0
    n = nz.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(n > 0, y.sum(axis=1) / n, 0.0)
        dev = np.where(nz, y - m[:, None], 0.0)
        v = np.where(n > 1, (dev**2).sum(axis=1) / (n - 1), 0.0)
        k = np.where((n > 1) & (v > 0), m**2 / v, 1.0)
    return n, m, np.clip(k, MIN_LOT_SHAPE, MAX_LOT_SHAPE)


def compound_draws(
    history: FloatArray,
    lead_days: FloatArray,
    rng: np.random.Generator,
    draws: int = DRAWS,
) -> tuple[FloatArray, FloatArray]:
    """Lead-time demand from a fitted compound model: Bernoulli days × gamma lots, (n, draws) twice.

    Each day of a drawn observed lead time L has a lot with probability p, and
    a lot is gamma with the lot sizes' mean and shape; the sum of N lots is
    Gamma(N·k).  Unlike the block bootstrap this reaches lots larger than any
    the window saw.  The lot frequency p is only estimated (a part used on
    5 % of 120 days has shown six lots), so each draw takes it from its
    sampling distribution, Beta(lots + ½, idle days + ½).  The mean lot is
    the window's own: drawing it too (× Gamma(lots·k)/(lots·k)) made the
    tail so heavy that 400 draws could not pin the fill-rate level — on a
    part with six lots in its window, s for 90 % fill had a standard
    deviation of 42 % of its mean over sets of 400 draws (27 % without the
    mean-lot draw), and every upward swing was ordered and then held for
    months (benchmark seed 9, docs/replenishment-benchmark.md).
    Returns the draws over L days and over the same L days and one more.
    """
    y = np.atleast_2d(np.asarray(history, dtype=np.float64))
    rows, t_len = y.shape
    n, m, k = _lots(y)
    lengths = _lead_lengths(lead_days, rows, t_len, rng, draws)
    p = rng.beta(
        n[:, None] + 0.5, np.maximum(t_len - n, 0)[:, None] + 0.5, (rows, draws)
    )
    scale = (m / k)[:, None]

    def lots_over(days: npt.NDArray[np.int64]) -> FloatArray:
        count = rng.binomial(days, p)
        total = rng.gamma(count * k[:, None] + 1e-300, 1.0) * scale
        return np.asarray(np.where(count > 0, total, 0.0), dtype=np.float64)

    lead = lots_over(lengths)
    return lead, lead + lots_over(np.ones_like(lengths))


def _lead_lengths(
    lead_days: FloatArray, rows: int, t_len: int, rng: np.random.Generator, draws: int
) -> npt.NDArray[np.int64]:
    """One of each row's observed lead times per draw, in whole days (0 without any), (rows, draws)."""
    lt = np.atleast_2d(np.asarray(lead_days, dtype=np.float64))
    lt = np.where(np.isfinite(lt) & (lt >= 0), lt, np.nan)
    have = ~np.isnan(lt)
    count = have.sum(axis=1)
    order = np.argsort(~have, axis=1, kind="stable")
    pick = (rng.random((rows, draws)) * np.maximum(count, 1)[:, None]).astype(np.int64)
    cols = np.take_along_axis(order, pick, axis=1)
    lengths = np.take_along_axis(np.where(have, lt, 0.0), cols, axis=1)
    return np.clip(np.round(lengths), 0, t_len).astype(np.int64)


def daily_shortage(
    lead: FloatArray, lead_next: FloatArray, s: FloatArray, qty: FloatArray
) -> FloatArray:
    """Expected units short per day at reorder point s with order multiple Q, per row.

    Ordering the smallest multiple of Q that lifts the position above s (the
    live reorder rule and the benchmark both do) leaves the inventory position
    after an order uniform on (s, s + Q], whatever the demand's lumps, so
    there is no undershoot below s to cover.  With Y that position and X_L,
    X_L+1 the demand over the lead time and one day more, the day after an
    order arrives is short E[(X_L+1 − Y)⁺] − E[(X_L − Y)⁺] (Hadley–Whitin),
    and over Y uniform E[(X − Y)⁺] = (((X − s)⁺)² − ((X − s − Q)⁺)²) / 2Q.
    """
    return np.asarray(
        (_beyond(lead_next, s, qty) - _beyond(lead, s, qty)).mean(axis=1), np.float64
    )


def expected_backlog(lead: FloatArray, s: FloatArray, qty: FloatArray) -> FloatArray:
    """Expected units on backorder at a random day-end at reorder point s, order multiple Q, per row.

    With the position Y uniform on (s, s + Q] at any time (see
    ``daily_shortage``), what is on backorder when an order placed a lead
    time ago arrives is (X_L − Y)⁺; its mean is the backlog a day carries,
    so a short unit of a part whose shortages come in big lots early in the
    lead time counts for every day it waits, not one.
    """
    return np.asarray(_beyond(lead, s, qty).mean(axis=1), np.float64)


def _beyond(x: FloatArray, s: FloatArray, qty: FloatArray) -> FloatArray:
    """E[(X − Y)⁺] over Y uniform on (s, s + Q], per draw: (((X − s)⁺)² − ((X − s − Q)⁺)²) / 2Q."""
    s2 = np.asarray(s, dtype=np.float64).reshape(-1, 1)
    q2 = np.maximum(np.asarray(qty, dtype=np.float64).reshape(-1, 1), 1e-9)
    over = np.maximum(np.atleast_2d(x) - s2, 0.0)
    past = np.maximum(np.atleast_2d(x) - s2 - q2, 0.0)
    return np.asarray((over**2 - past**2) / (2 * q2), np.float64)


def fill_rate_level(
    lead: FloatArray, lead_next: FloatArray, fill_rate: FloatArray, qty: FloatArray
) -> FloatArray:
    """Smallest s ≥ 0 whose daily shortage is at most (1 − β) of a day's demand, per row (bisection).

    A day's demand is the draws' own mean X_L+1 − X_L, so the target is the
    fill rate β of the distribution the level is solved on.
    """
    x0 = np.atleast_2d(np.asarray(lead, dtype=np.float64))
    x1 = np.atleast_2d(np.asarray(lead_next, dtype=np.float64))
    n = x0.shape[0]
    beta = np.broadcast_to(np.asarray(fill_rate, np.float64), (n,))
    q = np.broadcast_to(np.asarray(qty, np.float64), (n,))
    allowed = (1 - beta) * np.maximum((x1 - x0).mean(axis=1), 0.0)
    lo = np.zeros(n)
    hi = np.maximum(x1.max(axis=1), 0.0)
    for _ in range(SOLVE_STEPS):
        mid = (lo + hi) / 2
        ok = daily_shortage(x0, x1, mid, q) <= allowed
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    return np.asarray(hi, dtype=np.float64)


def quantile(
    samples: FloatArray, p: FloatArray | float, presorted: bool = False
) -> FloatArray:
    """The p-quantile of the draws per row (lower empirical quantile; p may differ per row)."""
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    x = x if presorted else np.sort(x, axis=1)
    n, m = x.shape
    if m == 0:
        return np.zeros(n)
    pp = np.broadcast_to(np.asarray(p, np.float64), (n,))
    idx = np.clip(np.ceil(pp * m - 1e-9).astype(np.int64) - 1, 0, m - 1)
    return np.asarray(np.take_along_axis(x, idx[:, None], axis=1)[:, 0], np.float64)


def _holdout_score(
    y: FloatArray,
    lead_days: FloatArray,
    fill_rate: FloatArray | float,
    rng: np.random.Generator,
) -> FloatArray:
    """Out-of-sample loss of each method's lead-time demand quantiles, (n, len(METHODS)).

    Each method is fitted on the window's first HOLDOUT_FIT share and asked
    for quantiles of demand over the row's median observed lead time; every
    window of that length in the held-out rest scores them with the pinball
    loss, summed over SCORE_LEVELS and the row's β.  The pinball loss is a
    proper score for a quantile (a method whose tail is too thin pays τ per
    unit a held-out lump exceeds it); summed over levels it approximates the
    CRPS of the upper half, steadier than the β-quantile alone when the
    held-out third saw only a few lumps.
    """
    n, t_len = y.shape
    cut = int(t_len * HOLDOUT_FIT)
    test = y[:, cut:]
    h = test.shape[1]
    lt = np.asarray(
        np.where(np.isfinite(lead_days) & (lead_days >= 0), lead_days, np.nan),
        np.float64,
    )
    none = np.asarray(np.isnan(lt).all(axis=1))
    med = np.nanmedian(np.where(none[:, None], 0.0, lt), axis=1)
    length = np.clip(np.round(med), 1, max(min(cut, h), 1)).astype(np.float64)
    fixed = length[:, None]
    beta = np.broadcast_to(np.asarray(fill_rate, np.float64), (n,))
    fits = (
        block_bootstrap(y[:, :cut], fixed, rng)[0],
        compound_draws(y[:, :cut], fixed, rng)[0],
    )
    cs = np.concatenate([np.zeros((n, 1)), np.cumsum(test, axis=1)], axis=1)
    j = np.arange(h + 1)[None, :]
    end = j + length[:, None].astype(np.int64)
    valid = end <= h
    sums = np.take_along_axis(cs, np.minimum(end, h), axis=1) - cs[:, : h + 1]
    scores = np.zeros((n, len(METHODS)))
    for code, x in enumerate(fits):
        ordered = np.sort(x, axis=1)
        for tau in (*SCORE_LEVELS, beta):
            tau2 = np.broadcast_to(np.asarray(tau, np.float64), (n,))[:, None]
            err = sums - quantile(ordered, tau2[:, 0], presorted=True)[:, None]
            loss = np.where(err > 0, tau2 * err, (tau2 - 1) * err)
            scores[:, code] += np.where(valid, loss, 0.0).sum(axis=1) / np.maximum(
                valid.sum(axis=1), 1
            )
    return scores


def draws(
    history: FloatArray,
    lead_days: FloatArray,
    fill_rate: FloatArray | float,
    rng: np.random.Generator,
    n_draws: int = DRAWS,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
    """Lead-time demand draws per row, over L and L + 1 days, and the method chosen, (n, draws) ×2, (n,).

    Per row the method — block bootstrap of the history, or the fitted
    compound model — with the lower out-of-sample loss (``_holdout_score``)
    at the row's fill-rate target; the block bootstrap needs at least
    MIN_DEMAND_DAYS days with demand to be a candidate (fewer lumps show no
    tail).  Non-finite and negative history counts as no demand; lead times
    that are not finite or negative are ignored.
    """
    raw = np.atleast_2d(np.asarray(history, dtype=np.float64))
    y = np.clip(np.where(np.isfinite(raw), raw, 0.0), 0.0, MAX_DAILY)
    lead = np.atleast_2d(np.asarray(lead_days, dtype=np.float64))
    lead = np.where(
        np.isfinite(lead) & (lead >= 0), np.minimum(lead, MAX_LEAD_DAYS), np.nan
    )
    enough = (y > 0).sum(axis=1) >= MIN_DEMAND_DAYS
    score = _holdout_score(y, lead, fill_rate, rng)
    use_block = enough & (score[:, BLOCK] <= score[:, COMPOUND])
    b0, b1 = block_bootstrap(y, lead, rng, n_draws)
    c0, c1 = compound_draws(y, lead, rng, n_draws)
    pick = use_block[:, None]
    return (
        np.asarray(np.where(pick, b0, c0), np.float64),
        np.asarray(np.where(pick, b1, c1), np.float64),
        np.where(use_block, BLOCK, COMPOUND).astype(np.int64),
    )
