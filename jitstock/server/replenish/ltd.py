"""Lead-time demand from the data: an empirical distribution per bin, and the fill-rate reorder point on it.

The normal curve under-covers: on lumpy parts (LTD − d·L)/(√L·σ₁) spreads
1.34–1.41 instead of 1 (issue 15).  So lead-time demand is sampled:

- ``block``: the bin's own history summed over windows as long as a lead
  time drawn from the supplier item's observed lead times (a moving-block
  bootstrap: runs of idle days and lumps stay as they happened, and the
  lead-time spread enters through the drawn lengths);
- ``gamma``: where the history has fewer than ``MIN_DEMAND_DAYS`` days with
  demand, a gamma with the mean d·L and variance L·σ_d² + d²·σ_L² (a
  right-skewed, non-negative fit to the same two moments the normal uses).

The reorder point s is the smallest level whose expected shortage per order
cycle, E[(X − s)⁺] − E[(X − s − Q)⁺], is at most (1 − β)·Q: the fill-rate
target β solved on the distribution itself rather than through a z.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Draws per bin: the 1 % tail of an A part then rests on a few dozen draws.
DRAWS = 400
# Fewer days with demand than this in the history: the block bootstrap has too few lumps to
# show a tail, so the two-moment gamma is used.
MIN_DEMAND_DAYS = 10
# Bisection steps on s: 2⁻³⁰ of the largest draw is far below one unit.
SOLVE_STEPS = 30
METHODS = ("block", "gamma")
BLOCK, GAMMA = range(2)


def block_bootstrap(
    history: FloatArray,
    lead_days: FloatArray,
    rng: np.random.Generator,
    draws: int = DRAWS,
) -> FloatArray:
    """Sums of the history over random windows of a randomly drawn observed lead time, (n, draws).

    ``lead_days`` is (n, k) NaN-padded; a row without any lead time gets 0-day windows.
    The window is clipped to the history's length.
    """
    y = np.atleast_2d(np.asarray(history, dtype=np.float64))
    n, t_len = y.shape
    lt = np.atleast_2d(np.asarray(lead_days, dtype=np.float64))
    have = ~np.isnan(lt)
    count = have.sum(axis=1)
    # draw one of each row's observed lead times (the non-NaN ones, in any column)
    order = np.argsort(~have, axis=1, kind="stable")
    pick = (rng.random((n, draws)) * np.maximum(count, 1)[:, None]).astype(np.int64)
    cols = np.take_along_axis(order, pick, axis=1)
    lengths = np.take_along_axis(np.where(have, lt, 0.0), cols, axis=1)
    lengths = np.clip(np.round(lengths), 0, t_len).astype(np.int64)
    starts = (rng.random((n, draws)) * (t_len - lengths + 1)).astype(np.int64)
    cs = np.concatenate([np.zeros((n, 1)), np.cumsum(y, axis=1)], axis=1)
    hi = np.take_along_axis(cs, starts + lengths, axis=1)
    lo = np.take_along_axis(cs, starts, axis=1)
    return np.asarray(hi - lo, dtype=np.float64)


def undershoot_draws(
    sizes: FloatArray, rng: np.random.Generator, draws: int = DRAWS
) -> FloatArray:
    """How far below the trigger the crossing pick lands, drawn per row, (n, draws).

    The pick that crosses is size-biased (a big pick is more likely to be the
    one that crosses), and it crosses anywhere along its length: Y drawn with
    probability ∝ its size, U = Y·uniform.  Its mean is E[X²]/2E[X]
    (demand.undershoot); the draws carry the whole spread, which on lumpy
    parts is most of the tail.  Rows without demand draw 0.
    """
    y = np.atleast_2d(np.maximum(np.asarray(sizes, dtype=np.float64), 0.0))
    n, m = y.shape
    total = y.sum(axis=1)
    if m == 0:
        return np.zeros((n, draws))
    with np.errstate(divide="ignore", invalid="ignore"):
        cw = np.where(total[:, None] > 0, np.cumsum(y, axis=1) / total[:, None], 1.0)
    rows = np.arange(n, dtype=np.float64)[:, None]
    # one global search: row i's cumulative weights live in (i, i + 1]
    flat = (np.minimum(cw, 1.0) + rows).ravel()
    r = rng.random((n, draws)) + rows
    idx = np.searchsorted(flat, r.ravel(), side="right").reshape(n, draws)
    idx = np.clip(idx - (np.arange(n) * m)[:, None], 0, m - 1)
    picked = np.take_along_axis(y, idx, axis=1)
    u = picked * rng.random((n, draws))
    return np.asarray(np.where(total[:, None] > 0, u, 0.0), dtype=np.float64)


def gamma_draws(
    mean: FloatArray, var: FloatArray, rng: np.random.Generator, draws: int = DRAWS
) -> FloatArray:
    """Draws of a gamma with the given mean and variance per row, (n, draws); 0 where the mean is 0."""
    m = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    v = np.maximum(np.atleast_1d(np.asarray(var, dtype=np.float64)), 1e-9)
    shape = np.where(m > 0, m**2 / v, 1.0)
    scale = np.where(m > 0, v / np.maximum(m, 1e-12), 0.0)
    g = rng.gamma(shape[:, None], 1.0, (m.size, draws))
    return np.asarray(g * scale[:, None], dtype=np.float64)


def expected_shortage(
    samples: FloatArray, s: FloatArray, qty: FloatArray
) -> FloatArray:
    """E[(X − s)⁺] − E[(X − s − Q)⁺] per row: units short in one order cycle."""
    x = np.atleast_2d(samples)
    s2 = np.asarray(s, dtype=np.float64).reshape(-1, 1)
    q2 = np.asarray(qty, dtype=np.float64).reshape(-1, 1)
    short = np.maximum(x - s2, 0.0) - np.maximum(x - s2 - q2, 0.0)
    return np.asarray(short.mean(axis=1), dtype=np.float64)


def fill_rate_level(
    samples: FloatArray, fill_rate: FloatArray, qty: FloatArray
) -> FloatArray:
    """Smallest s with expected shortage per cycle ≤ (1 − β)·Q, per row (bisection, vectorised)."""
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    n = x.shape[0]
    allowed = (1 - np.broadcast_to(np.asarray(fill_rate, np.float64), (n,))) * (
        np.broadcast_to(np.asarray(qty, np.float64), (n,))
    )
    lo = np.zeros(n)
    hi = x.max(axis=1)
    q = np.broadcast_to(np.asarray(qty, np.float64), (n,))
    for _ in range(SOLVE_STEPS):
        mid = (lo + hi) / 2
        ok = expected_shortage(x, mid, q) <= allowed
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    return np.asarray(hi, dtype=np.float64)


def quantile(samples: FloatArray, p: float) -> FloatArray:
    """The p-quantile of the lead-time demand per row (lower empirical quantile)."""
    return np.asarray(
        np.quantile(np.atleast_2d(samples), p, axis=1, method="inverted_cdf"),
        np.float64,
    )


def draws(
    history: FloatArray,
    lead_days: FloatArray,
    mean: FloatArray,
    var: FloatArray,
    rng: np.random.Generator,
    n_draws: int = DRAWS,
    pick_sizes: FloatArray | None = None,
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Lead-time demand (plus undershoot) draws per row and the method used, (n, draws), (n,).

    Block bootstrap where the history has at least MIN_DEMAND_DAYS days with
    demand; elsewhere a gamma with ``mean`` (d·L) and ``var`` (L·σ_d² + d²·σ_L²).
    With ``pick_sizes`` (n, m) each draw adds an undershoot draw
    (undershoot_draws): the position when the order goes out is that far
    below the trigger, so the reorder point must cover LTD + U, not LTD.
    """
    y = np.atleast_2d(np.asarray(history, dtype=np.float64))
    enough = (y > 0).sum(axis=1) >= MIN_DEMAND_DAYS
    block = block_bootstrap(y, lead_days, rng, n_draws)
    gamma = gamma_draws(mean, var, rng, n_draws)
    gamma = np.broadcast_to(gamma, block.shape)
    out = np.where(enough[:, None], block, gamma)
    if pick_sizes is not None:
        out = out + undershoot_draws(pick_sizes, rng, n_draws)
    return np.asarray(out, np.float64), np.where(enough, BLOCK, GAMMA).astype(np.int64)
