"""How far achieved fill falls below plan, measured out of sample on each part's own history.

A reorder point solved on draws from a 120-day window misses its target on
average: the window is a sample, and a quantile read off a sample falls
short of its nominal coverage — the more so the higher the target, so class
A (99 %) pays most.  This module measures that shortfall where the server
can: each part's draws are fitted on the first ``HOLDOUT_FIT`` of its own
window, its reorder point is solved for its target there, and the held-out
rest of the window — every stretch of the part's median lead time — says how
many units that reorder point would really have left short (the same
Hadley–Whitin shortage the solve uses, on the held-out sums instead of
draws).  Per class, realized shortage over planned shortage is the factor by
which the class's allowed shortage is divided when its targets are allocated
(``allocate.allocate``'s ``calibration``), never below 1 and at most
``MAX_FACTOR``.  Nothing of the future is used: the held-out days are the
past the part has already lived.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from jitstock.server.replenish import ltd

FloatArray = npt.NDArray[np.float64]

HOLDOUT_FIT = ltd.HOLDOUT_FIT
# Only classes with a target at least this high are calibrated (A by default): the quantile's
# estimation bias grows with the target, and at B and C targets the held-out third (fitted on
# 80 of 120 days, without the forecast's trend term) overstates the shortfall — on seed 1 it
# measured 1.49 and 1.34 where the achieved fill said 1.12 and 0.95 — and would overstock.
MIN_TARGET = 0.985
# A factor above this is more likely a shift in demand than estimation error; capped.
MAX_FACTOR = 3.0
# Below this much planned shortage in a class (units a day) the ratio is noise: factor 1.
MIN_PLANNED_SHORT = 1e-6


def shortfall(
    history: FloatArray,
    lead_days: FloatArray,
    targets: FloatArray | float,
    qty: FloatArray | float,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """Per part: (planned, realized) units short a day on the held-out part of its window.

    The plan is solved on draws fitted to the window's first HOLDOUT_FIT share,
    over the part's median observed lead time; both numbers are on the
    held-out days' demand, so a part that grew counts its growth in both.
    """
    y = np.atleast_2d(np.asarray(history, np.float64))
    y = np.clip(np.where(np.isfinite(y), y, 0.0), 0.0, ltd.MAX_DAILY)
    n, t_len = y.shape
    cut = int(t_len * HOLDOUT_FIT)
    test = y[:, cut:]
    h = test.shape[1]
    if cut < 2 or h < 2:
        return np.zeros(n), np.zeros(n)
    lt = np.atleast_2d(np.asarray(lead_days, np.float64))
    lt = np.where(np.isfinite(lt) & (lt >= 0), lt, np.nan)
    none = np.asarray(np.isnan(lt).all(axis=1))
    med = np.nanmedian(np.where(none[:, None], 0.0, lt), axis=1)
    length = np.clip(np.round(med), 1, max(h - 1, 1)).astype(np.int64)
    beta = np.broadcast_to(np.asarray(targets, np.float64), (n,))
    q = np.broadcast_to(np.asarray(qty, np.float64), (n,))
    x0, x1, _ = ltd.draws(y[:, :cut], length[:, None].astype(np.float64), beta, rng)
    s = ltd.fill_rate_level(x0, x1, beta, q)
    cs = np.concatenate([np.zeros((n, 1)), np.cumsum(test, axis=1)], axis=1)
    j = np.arange(h)[None, :]
    end0 = j + length[:, None]
    valid = end0 + 1 <= h
    r0 = np.take_along_axis(cs, np.minimum(end0, h), axis=1) - cs[:, :h]
    r1 = np.take_along_axis(cs, np.minimum(end0 + 1, h), axis=1) - cs[:, :h]
    s2 = s[:, None]
    q2 = np.maximum(q, 1e-9)[:, None]

    def beyond(x: FloatArray) -> FloatArray:
        over = np.maximum(x - s2, 0.0)
        past = np.maximum(x - s2 - q2, 0.0)
        return np.asarray((over**2 - past**2) / (2 * q2), np.float64)

    per = np.where(valid, beyond(r1) - beyond(r0), 0.0)
    count = np.maximum(valid.sum(axis=1), 1)
    realized = per.sum(axis=1) / count
    mu = np.where(valid, r1 - r0, 0.0).sum(axis=1) / count
    planned = (1 - beta) * mu
    return np.asarray(planned, np.float64), np.asarray(realized, np.float64)


def class_factors(
    planned: FloatArray,
    realized: FloatArray,
    classes: Sequence[str] | npt.NDArray[np.str_],
    class_targets: dict[str, float],
    min_target: float = MIN_TARGET,
) -> dict[str, float]:
    """Per class Σ realized / Σ planned shortage, clipped to [1, MAX_FACTOR].

    1 without a plan, and for a class whose target is below ``min_target``.
    """
    cls = np.asarray(classes).astype(str)
    out = {}
    for name in sorted(set(cls.tolist())):
        if class_targets.get(name, 0.0) < min_target:
            out[name] = 1.0
            continue
        m = cls == name
        p = float(np.asarray(planned)[m].sum())
        r = float(np.asarray(realized)[m].sum())
        ratio = r / p if p > MIN_PLANNED_SHORT and np.isfinite(r) else 1.0
        out[name] = round(float(np.clip(ratio, 1.0, MAX_FACTOR)), 4)
    return out
