"""Per-part fill targets optimised within an ABC class: the class target met at the least stock and backorder value.

A class's fill target is a demand-weighted (unit) target over its parts:
the class is short Σᵢ shortᵢ(sᵢ) units a day against Σᵢ μᵢ demanded, so it
meets β_C when Σᵢ shortᵢ(sᵢ) ≤ (1 − β_C)·Σᵢ μᵢ.  Holding every part at β_C
meets that, but not cheaply: a unit of reorder point buys a lot of fill on a
cheap smooth part and little on a dear lumpy one.  The least stock value
Σᵢ cᵢ·sᵢ meeting the class target is a Lagrangian problem: for a multiplier
λ (value per unit short a day) each part picks the s minimising
cᵢ·s + λ·shortᵢ(s) on its own lead-time demand draws (``ltd.daily_shortage``,
evaluated on a grid of s), and λ is bisected until the class total just
meets the target.  Marginal analysis in one line: every part ends where one
more unit of value buys the same fill·demand.

Stock value alone sheds fill on the dearest parts first, and a dear part
short is dear too: a backorder waits, and a line pays for the wait in
proportion to what the part is worth.  So each part's objective also
prices its expected backlog (``ltd.expected_backlog``: units on backorder
at a day's end, which counts a unit short for every day it waits — long
for a lump that empties the bin early in a lead time) at ``backorder_weight``
unit-days of stock per unit-day on backorder:
cᵢ·(s + w·backlogᵢ(s)) + λ·shortᵢ(s).  w = 0 is the least stock value;
the benchmark's own cost rates (holding 25 % a year, backorders 10 % of the
value a day) make w = 146, at which the parts' own choices (λ → 0) pass
the B and C targets, so λ can no longer hold those classes to them (at
w = 50 they reach about 95 % on their own).  The default, 30, sits below
that: λ still meets each class's target, and the dearest parts are no
longer given up (docs/replenishment-benchmark.md, round 6).

A part's allocated target is the fill its chosen s gives on its draws, never
below ``floor`` (default 90 %, at most the class target) read as fill or as
cycle service, whichever the part meets at the lower s (``part_floors``):
a line manager does not accept a part planned to run short most cycles, and
the floor is what keeps dear lumpy parts from being given up — but 90 % of
the units of a part whose demand comes in rare huge lots costs many times
what 90 % of its cycles does, and the cycles are what the floor is for.  The plan never costs more
(stock and weighted backlog, on exact reorder points) than holding every
part at the class target: where the grid's plan would, the class falls back
to the uniform target (``Allocation.uniform``).

The multiplier of each class is what a single bin needs to recompute its
own target between full runs (``part_targets``): the decomposition makes a
part's choice depend on the class only through λ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from jitstock.server.replenish import ltd
from jitstock.server.replenish.policy import SERVICE_LEVEL_RANGE

FloatArray = npt.NDArray[np.float64]

# No part is planned below this fill (or its class target, if lower).
DEFAULT_FILL_FLOOR = 0.90
# Grid of s per part: quantile levels of its draws over L + 1 days, dense near the top where
# the A targets sit (a 0.01 % step in the tail), plus s = 0.
GRID_LEVELS = np.concatenate(
    [np.linspace(0.0, 0.9, 19), 1 - np.geomspace(0.1, 2e-4, 48)[1:], [1.0]]
)
# λ is bisected in log space over this range (value per unit short a day).
LOG_LAMBDA_RANGE = (-8.0, 16.0)
LAMBDA_STEPS = 60
# Source label of a target allocated within its class (``service_level_source``).
SOURCE = "abc-optimised"
# A unit on backorder for a day costs as much as holding this many units' worth of stock for
# a day (``JITSTOCK_REPLENISH_BACKORDER_WEIGHT``); 0 plans for stock value alone.
DEFAULT_BACKORDER_WEIGHT = 30.0


@dataclass(slots=True, frozen=True)
class Curves:
    """Per part: the grid of reorder points, the fill each gives on the draws, and the daily demand."""

    s: FloatArray  # (n, G) ascending
    fill: FloatArray  # (n, G) nondecreasing, capped at the top of SERVICE_LEVEL_RANGE
    mu: FloatArray  # (n,) mean daily demand of the draws (the class weight)
    # (n, G) nondecreasing: the share of order cycles without a stockout (``cycle_service``)
    cycle: FloatArray
    # (n, G) nonincreasing: expected units on backorder at a day's end (``ltd.expected_backlog``)
    backlog: FloatArray

    def rows(self, m: npt.NDArray[np.bool_]) -> Curves:
        """The curves of the parts selected by mask ``m``."""
        return Curves(
            self.s[m], self.fill[m], self.mu[m], self.cycle[m], self.backlog[m]
        )


@dataclass(slots=True, frozen=True)
class Allocation:
    """The allocated plan: per part its target, per class its multiplier and planned fill."""

    targets: FloatArray  # (n,) fill target per part
    multipliers: dict[
        str, float
    ]  # λ per class (NaN where the class fell back to uniform)
    planned_fill: dict[str, float]  # demand-weighted planned fill per class
    uniform: dict[str, bool]  # True where the class kept its uniform target
    # the class target the plan aims at: the nominal one raised by its calibration factor
    aimed: dict[str, float]


def curves(lead: FloatArray, lead_next: FloatArray, qty: FloatArray) -> Curves:
    """Each part's fill on its draws at every grid reorder point (shortage falls as s rises)."""
    x0 = np.atleast_2d(np.asarray(lead, np.float64))
    x1 = np.atleast_2d(np.asarray(lead_next, np.float64))
    n = x0.shape[0]
    q = np.broadcast_to(np.asarray(qty, np.float64), (n,))
    if x1.shape[1] == 0:
        z = np.zeros((n, 1))
        return Curves(z, np.ones((n, 1)), np.zeros(n), np.ones((n, 1)), z)
    grid = np.quantile(x1, GRID_LEVELS, axis=1).T
    grid = np.concatenate([np.zeros((n, 1)), np.maximum(grid, 0.0)], axis=1)
    mu = np.maximum((x1 - x0).mean(axis=1), 0.0)
    short = np.stack(
        [ltd.daily_shortage(x0, x1, grid[:, g], q) for g in range(grid.shape[1])],
        axis=1,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        fill = np.where(mu[:, None] > 0, 1 - short / mu[:, None], 1.0)
    # the solve clips targets to SERVICE_LEVEL_RANGE: a plan counts no part above its top
    fill = np.minimum(np.maximum.accumulate(fill, axis=1), SERVICE_LEVEL_RANGE[1])
    cycle = np.stack(
        [cycle_service(x0, grid[:, g], q) for g in range(grid.shape[1])], axis=1
    )
    backlog = np.stack(
        [ltd.expected_backlog(x0, grid[:, g], q) for g in range(grid.shape[1])],
        axis=1,
    )
    return Curves(
        np.asarray(grid, np.float64),
        np.asarray(fill, np.float64),
        mu,
        np.asarray(np.maximum.accumulate(cycle, axis=1), np.float64),
        np.asarray(np.minimum.accumulate(backlog, axis=1), np.float64),
    )


def cycle_service(lead: FloatArray, s: FloatArray, qty: FloatArray) -> FloatArray:
    """Per row the share of order cycles without a stockout at reorder point s, order multiple Q.

    The position after an order is uniform on (s, s + Q] (see
    ``ltd.daily_shortage``) and the order arrives after the lead time's
    demand X_L, so a cycle runs short when X_L exceeds it:
    P(X_L < Y) = E[clip((s + Q − X_L) / Q, 0, 1)].
    """
    x = np.atleast_2d(np.asarray(lead, np.float64))
    s2 = np.asarray(s, np.float64).reshape(-1, 1)
    q2 = np.maximum(np.asarray(qty, np.float64).reshape(-1, 1), 1e-9)
    return np.asarray(np.clip((s2 + q2 - x) / q2, 0.0, 1.0).mean(axis=1), np.float64)


def part_floors(c: Curves, floor: float | FloatArray) -> FloatArray:
    """Each part's least planned fill: ``floor`` as fill or as cycle service, whichever is cheaper.

    The floor is there so that no part is planned to run short most cycles.
    On a smooth part the fill floor is the cheaper reading (90 % fill needs
    far less than 90 % of cycles without a stockout); on a part whose demand
    comes in lots as large as a lead time's demand it is the other way round
    — 90 % of its units means covering the rare huge lots, 90 % of its
    cycles does not — so the part's floor is the fill at the lowest reorder
    point meeting either, and the allocation decides the rest.
    """
    n = c.mu.shape[0]
    fl = np.broadcast_to(np.asarray(floor, np.float64), (n,))
    meets = (c.fill >= fl[:, None] - 1e-12) | (c.cycle >= fl[:, None] - 1e-12)
    meets[:, -1] = True
    first = np.argmax(meets, axis=1)
    return np.asarray(np.minimum(fl, _take(c.fill, first)), np.float64)


def _choose(
    c: Curves, cost: FloatArray, lam: float, floor: FloatArray, weight: float
) -> npt.NDArray[np.int64]:
    """Per part the grid index minimising cost·(s + w·backlog(s)) + λ·short(s) among the points meeting the floor."""
    short = (1 - c.fill) * c.mu[:, None]
    obj = cost[:, None] * (c.s + weight * c.backlog) + lam * short
    ok = c.fill >= floor[:, None] - 1e-12
    ok[:, -1] = True  # the top of the grid serves every draw
    return np.asarray(np.argmin(np.where(ok, obj, np.inf), axis=1), np.int64)


def _take(a: FloatArray, idx: npt.NDArray[np.int64]) -> FloatArray:
    return np.asarray(
        np.take_along_axis(a, np.asarray(idx, np.int64)[:, None], axis=1)[:, 0],
        np.float64,
    )


def part_targets(
    c: Curves,
    cost: FloatArray,
    lam: float | FloatArray,
    floor: float | FloatArray,
    backorder_weight: float = DEFAULT_BACKORDER_WEIGHT,
) -> FloatArray:
    """Each part's target for a known class multiplier λ (a single bin between full runs)."""
    n = c.mu.shape[0]
    lams = np.broadcast_to(np.asarray(lam, np.float64), (n,))
    fl = np.broadcast_to(np.asarray(floor, np.float64), (n,))
    out = np.empty(n)
    for value in np.unique(lams):
        m = lams == value
        sub = c.rows(m)
        low = part_floors(sub, fl[m])
        idx = _choose(sub, _cost(cost)[m], float(value), low, backorder_weight)
        out[m] = np.maximum(_take(sub.fill, idx), low)
    return out


def _cost(cost: FloatArray | float) -> FloatArray:
    """Unit values for the objective: a missing or non-positive one takes the median of the rest."""
    c = np.atleast_1d(np.asarray(cost, np.float64)).copy()
    good = np.isfinite(c) & (c > 0)
    c[~good] = float(np.median(c[good])) if good.any() else 1.0
    return c


def allocate(
    lead: FloatArray,
    lead_next: FloatArray,
    qty: FloatArray,
    cost: FloatArray,
    classes: Sequence[str] | npt.NDArray[np.str_],
    class_targets: dict[str, float],
    floor: float = DEFAULT_FILL_FLOOR,
    calibration: dict[str, float] | None = None,
    backorder_weight: float = DEFAULT_BACKORDER_WEIGHT,
) -> Allocation:
    """Per-part fill targets meeting each class's demand-weighted target at the least stock value.

    ``classes`` names each part's class; a class missing from
    ``class_targets`` keeps no allocation (its parts get NaN, the caller's
    own target then applies).  ``calibration`` divides a class's allowed
    shortage by its measured plan→achieved factor (``calibrate``): the plan
    then aims at 1 − (1 − β)/factor so that what is achieved lands on β.
    """
    x0 = np.atleast_2d(np.asarray(lead, np.float64))
    x1 = np.atleast_2d(np.asarray(lead_next, np.float64))
    n = x0.shape[0]
    q = np.broadcast_to(np.asarray(qty, np.float64), (n,))
    cls = np.asarray(classes).astype(str)
    unit = _cost(np.broadcast_to(np.asarray(cost, np.float64), (n,)))
    cv = curves(x0, x1, q)
    targets = np.full(n, np.nan)
    lams: dict[str, float] = {}
    planned: dict[str, float] = {}
    uniform: dict[str, bool] = {}
    aimed: dict[str, float] = {}
    for name in sorted(set(cls.tolist())):
        if name not in class_targets:
            continue
        m = cls == name
        factor = max(float((calibration or {}).get(name, 1.0)), 1.0)
        nominal = float(np.clip(class_targets[name], *SERVICE_LEVEL_RANGE))
        beta = float(np.clip(1 - (1 - nominal) / factor, *SERVICE_LEVEL_RANGE))
        sub = cv.rows(m)
        fl = part_floors(sub, np.full(int(m.sum()), min(floor, nominal)))
        lam, idx = _solve_class(sub, unit[m], beta, fl, backorder_weight)
        chosen = np.maximum(_take(sub.fill, idx), fl)
        # the plan on exact reorder points, against every part at the class target
        s_alloc = ltd.fill_rate_level(x0[m], x1[m], chosen, q[m])
        s_flat = ltd.fill_rate_level(x0[m], x1[m], np.full(len(fl), beta), q[m])
        keep = _objective(x0[m], q[m], unit[m], s_alloc, backorder_weight) <= (
            _objective(x0[m], q[m], unit[m], s_flat, backorder_weight)
        )
        targets[m] = chosen if keep else beta
        lams[name] = lam if keep else float("nan")
        uniform[name] = not keep
        aimed[name] = round(beta, 6)
        w = sub.mu
        planned[name] = (
            round(float((w * targets[m]).sum() / w.sum()), 6) if w.sum() > 0 else 1.0
        )
    return Allocation(targets, lams, planned, uniform, aimed)


def _objective(
    x0: FloatArray, q: FloatArray, unit: FloatArray, s: FloatArray, weight: float
) -> float:
    """Σ value·(s + w·backlog(s)) at exact reorder points: what the plan minimises, per class."""
    return float((unit * (s + weight * ltd.expected_backlog(x0, s, q))).sum())


def _solve_class(
    c: Curves, cost: FloatArray, beta: float, floor: FloatArray, weight: float
) -> tuple[float, npt.NDArray[np.int64]]:
    """The smallest λ (log bisection) whose choices meet the class's demand-weighted target."""
    allowed = (1 - beta) * float(c.mu.sum())

    def short(idx: npt.NDArray[np.int64]) -> float:
        return float(((1 - _take(c.fill, idx)) * c.mu).sum())

    lo, hi = LOG_LAMBDA_RANGE
    idx = _choose(c, cost, 10.0**lo, floor, weight)
    if short(idx) <= allowed:
        return 10.0**lo, idx
    best = _choose(c, cost, 10.0**hi, floor, weight)
    for _ in range(LAMBDA_STEPS):
        mid = (lo + hi) / 2
        cand = _choose(c, cost, 10.0**mid, floor, weight)
        if short(cand) <= allowed:
            hi, best = mid, cand
        else:
            lo = mid
    return 10.0**hi, best
