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
``MAX_FACTOR``; the middle class (B) takes its ratio relative to the lowest
class's (``class_factors``).  Nothing of the future is used: the held-out days are the
past the part has already lived.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from jitstock.server.replenish import ltd

FloatArray = npt.NDArray[np.float64]

HOLDOUT_FIT = ltd.HOLDOUT_FIT
# Classes with a target at least this high take their back-test ratio as it is (A by default):
# the quantile's estimation bias grows with the target.  At B and C targets the held-out third
# (fitted on 80 of 120 days, without the forecast's trend term) overstates the shortfall — on
# seed 1 it measured 1.49 and 1.34 where the achieved fill said 1.12 and 0.95 — and would
# overstock taken as it is.
MIN_TARGET = 0.985
# A class between the lowest class target and MIN_TARGET (B) takes its ratio divided by the
# lowest class's (C's), which the uncalibrated plan meets: the division takes out the
# back-test's own overstatement at a moderate target and keeps what B misses beyond it (lumpy
# parts planned at 90-95 % whose achieved fill falls short; see ``class_factors``).  Benchmark
# seeds 1, 2, 3, 6, 7, 10, 13, 14: B/C ratio 1.02-1.33, tracking B's uncalibrated shortfall.
RELATIVE_BELOW_MIN = True
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


def needs_backtest(target: float, relative: bool = RELATIVE_BELOW_MIN) -> bool:
    """Whether a part with this class target is back-tested: its class calibrated, or the reference."""
    return relative or target >= MIN_TARGET


def class_factors(
    planned: FloatArray,
    realized: FloatArray,
    classes: Sequence[str] | npt.NDArray[np.str_],
    class_targets: dict[str, float],
    min_target: float = MIN_TARGET,
    relative: bool = RELATIVE_BELOW_MIN,
) -> dict[str, float]:
    """Per class Σ realized / Σ planned shortage, clipped to [1, MAX_FACTOR].

    A class with a target of at least ``min_target`` takes its ratio as it
    is.  With ``relative``, a class whose target lies between the lowest
    class target and ``min_target`` (B by default) takes its ratio divided
    by the lowest class's (C's): the back-test's own overstatement at a
    moderate target, measured where the class needs no correction, is taken
    out.  1 without a plan, for the lowest class, and (without
    ``relative``) for every class below ``min_target``.
    """
    cls = np.asarray(classes).astype(str)
    raw: dict[str, float] = {}
    for name in sorted(set(cls.tolist())):
        m = cls == name
        p = float(np.asarray(planned)[m].sum())
        r = float(np.asarray(realized)[m].sum())
        raw[name] = r / p if p > MIN_PLANNED_SHORT and np.isfinite(r) else float("nan")
    present = [c for c in raw if c in class_targets]
    lowest = min(present, key=lambda c: class_targets[c]) if present else None
    # a reference below 1 (the lowest class met its plan with room) does not raise the others
    # past their own ratio
    ref = raw.get(lowest, float("nan")) if lowest is not None else float("nan")
    ref = max(ref, 1.0) if np.isfinite(ref) else float("nan")
    out = {}
    for name, ratio in raw.items():
        target = class_targets.get(name, 0.0)
        if target >= min_target:
            value = ratio
        elif relative and lowest is not None and target > class_targets[lowest]:
            value = ratio / ref
        else:
            value = 1.0
        value = value if np.isfinite(value) else 1.0
        out[name] = round(float(np.clip(value, 1.0, MAX_FACTOR)), 4)
    return out
