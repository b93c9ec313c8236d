"""The policies the benchmark compares, as rules the simulation asks every week, and their tuning.

1. ``jitstock`` — ``jitstock.server.replenish`` itself, recomputed weekly:
   class, forecast, lead time learned from the deliveries so far, reorder
   point solved for the class's fill rate on the lead-time demand draws.
2. ``informed`` — textbook ROP on the same observed lead times, k per class.
3. ``minmax_weekly`` — (s,S) min/max recalculated weekly on observed lead times.
4. ``minmax`` — static ERP min/max from the history average, set once.
5. ``classic`` — textbook ROP on the quoted lead time, z from the targets.

All order the same quantity rule (a week of demand, whole packs, MOQ), so the
comparison is about when to order.  The baselines' parameters are tuned by
bisection to jitstock's achieved fill (``tune``, ``tune_per_class``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jitstock.bench.policy_sim import (
    HISTORY_DAYS,
    WINDOW_DAYS,
    FloatArray,
    Forecasts,
    Outcome,
    Plant,
    Rule,
    summarise,
)
from jitstock.server.replenish import allocate, calibrate, leadtime, ltd, policy

BISECT_STEPS = 10


def _week_q(rate: FloatArray, plant: Plant) -> FloatArray:
    return policy.round_order_qty(
        rate * policy.DEFAULT_ORDER_CYCLE_DAYS, plant.pack, plant.moq
    )


def jitstock_rule(
    plant: Plant,
    fc: Forecasts,
    targets: FloatArray,
    class_targets: dict[str, float] | None = None,
    floor: float = allocate.DEFAULT_FILL_FLOOR,
    plans: list[dict[str, float]] | None = None,
    calibrated: bool = True,
    backorder_weight: float = allocate.DEFAULT_BACKORDER_WEIGHT,
) -> Rule:
    """jitstock's policy: the server's replenish code on every part at once.

    With ``class_targets`` each class's target is allocated over its parts
    (``allocate.allocate``, as the live full recalculation does); otherwise
    every part is solved for its entry in ``targets``.  ``plans`` collects
    the planned class fills of each recalculation.  ``calibrated``: each
    class's plan is raised by its plan→achieved shortfall measured on the
    parts' own windows (``calibrate``).  ``backorder_weight``: the
    allocation's price of a unit-day on backorder in unit-days of stock
    (``allocate``).
    """
    nan = np.full(plant.demand.shape[0], np.nan)

    def rule(t: int, seen: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        i = fc.days.index(t)
        # lead-time history: deliveries before day 0, then those of this run, oldest first
        samples = _compact(np.concatenate([plant.prior_lead, seen], axis=1))
        lt = leadtime.estimate(samples, plant.quoted)
        lead_x, next_x, _ = ltd.draws(
            fc.window[i], samples, targets, np.random.default_rng([seed_of(plant), t])
        )
        service = targets
        if class_targets is not None:
            q = policy.round_order_qty(
                np.maximum(fc.rate[i], 0.0) * policy.DEFAULT_ORDER_CYCLE_DAYS,
                plant.pack,
                plant.moq,
            )
            factors = None
            if calibrated:
                # only the classes calibrated, and their reference, need the back-test
                m = np.asarray([calibrate.needs_backtest(float(v)) for v in targets])
                planned, realized = calibrate.shortfall(
                    fc.window[i][m],
                    samples[m],
                    targets[m],
                    q[m],
                    np.random.default_rng([seed_of(plant), t, 1]),
                )
                factors = calibrate.class_factors(
                    planned, realized, plant.abc_class[m], class_targets
                )
            plan = allocate.allocate(
                lead_x,
                next_x,
                q,
                plant.unit_cost,
                plant.abc_class,
                class_targets,
                floor,
                factors,
                backorder_weight,
            )
            service = np.where(np.isnan(plan.targets), targets, plan.targets)
            if plans is not None:
                plans.append(
                    {
                        **plan.planned_fill,
                        **{f"factor_{c}": v for c, v in (factors or {}).items()},
                    }
                )
        p = policy.compute(
            policy.PolicyInputs(
                demand=fc.rate[i],
                sigma_d=fc.sigma[i],
                lead=lt.mean,
                sigma_l=lt.sigma,
                service_level=service,
                pack=plant.pack,
                moq=plant.moq,
                undershoot=fc.undershoot[i],
                fade=fc.fade[i],
                ltd_samples=(lead_x, next_x),
            )
        )
        return p.reorder_at, nan, p.order_qty

    return rule


def classic_rule(
    plant: Plant, fc: Forecasts, targets: FloatArray, scale: float = 1.0
) -> Rule:
    """Textbook ROP: d·L + z·σ_d·√L with the quoted L, z from the cycle service level."""
    z = policy.z_for(targets) * scale
    nan = np.full(plant.demand.shape[0], np.nan)

    def rule(t: int, _seen: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        i = fc.days.index(t)
        d, sd = fc.mean[i], fc.std[i]
        s = d * plant.quoted + z * sd * np.sqrt(plant.quoted)
        return np.ceil(s), nan, _week_q(d, plant)

    return rule


def seed_of(plant: Plant) -> int:
    """A stable integer from the plant (its draws are seeded from it, not from the wall clock)."""
    return int(plant.demand[:, :7].sum()) % (2**31)


def _observed_lead(plant: Plant, seen: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Plain mean and σ of every lead time observed so far (before day 0 and in the run)."""
    x = _compact(np.concatenate([plant.prior_lead, seen], axis=1))
    mean = np.nanmean(x, axis=1)
    return mean, np.nanstd(x, axis=1, ddof=1)


def informed_rule(plant: Plant, fc: Forecasts, k: FloatArray) -> Rule:
    """Textbook ROP on the same observed lead times: d·L + k·√(L·σ_d² + d²·σ_L²), weekly."""
    nan = np.full(plant.demand.shape[0], np.nan)

    def rule(t: int, seen: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        i = fc.days.index(t)
        d, sd = fc.mean[i], fc.std[i]
        lm, ls = _observed_lead(plant, seen)
        s = d * lm + k * np.sqrt(lm * sd**2 + d**2 * ls**2)
        return np.ceil(s), nan, _week_q(d, plant)

    return rule


def minmax_weekly_rule(plant: Plant, fc: Forecasts, factor: FloatArray) -> Rule:
    """(s,S) min/max recalculated weekly: min = window average × observed L × factor, max = min + a week."""

    def rule(t: int, seen: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        i = fc.days.index(t)
        d = fc.mean[i]
        lm, _ = _observed_lead(plant, seen)
        lo = np.ceil(d * lm * factor)
        q = _week_q(d, plant)
        return lo, lo + q, q

    return rule


def minmax_rule(plant: Plant, factor: float | FloatArray) -> Rule:
    """Static ERP min/max from the history average, set once."""
    avg = plant.demand[:, HISTORY_DAYS - WINDOW_DAYS : HISTORY_DAYS].mean(axis=1)
    lo = np.ceil(avg * plant.quoted * factor)
    hi = lo + _week_q(avg, plant)

    def rule(_t: int, _seen: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        return lo, hi, _week_q(avg, plant)

    return rule


def _compact(seen: FloatArray) -> FloatArray:
    """Each row's last leadtime.MAX_DELIVERIES observed values, right-aligned, NaN before them.

    Per row: a part ordering weekly must keep its own deliveries even where
    another part has placed hundreds of orders (a shared column window would
    leave the weekly part with none and its lead-time draws empty).
    """
    have = ~np.isnan(seen)
    # NaNs first, then the row's observations in their order
    order = np.argsort(have, axis=1, kind="stable")
    packed = np.take_along_axis(seen, order, axis=1)
    width = min(
        leadtime.MAX_DELIVERIES, int(have.sum(axis=1).max()) if have.size else 0
    )
    return packed[:, packed.shape[1] - width :]


def tune(
    run: Callable[[float], Outcome], plant: Plant, lo: float, hi: float, fill: float
) -> tuple[float, Outcome]:
    """Smallest parameter in [lo, hi] whose overall fill rate reaches ``fill`` (bisection)."""
    best = run(hi)
    for _ in range(BISECT_STEPS):
        mid = (lo + hi) / 2
        o = run(mid)
        if summarise(plant, o)["fill_rate"] >= fill:
            hi, best = mid, o
        else:
            lo = mid
    return hi, best


def tune_per_class(
    run: Callable[[FloatArray], Outcome],
    plant: Plant,
    lo: float,
    hi: float,
    fills: dict[str, float],
    steps: int = BISECT_STEPS,
) -> tuple[dict[str, float], Outcome]:
    """Per ABC class the smallest parameter reaching that class's fill in ``fills`` (classes bisected together)."""
    classes = ("A", "B", "C")
    a = dict.fromkeys(classes, lo)
    b = dict.fromkeys(classes, hi)

    def vec(p: dict[str, float]) -> FloatArray:
        return np.asarray([p[str(c)] for c in plant.abc_class], dtype=np.float64)

    best = run(vec(b))
    for _ in range(steps):
        mid = {c: (a[c] + b[c]) / 2 for c in classes}
        o = run(vec(mid))
        for c in classes:
            if summarise(plant, o, plant.abc_class == c)["fill_rate"] >= fills[c]:
                b[c] = mid[c]
            else:
                a[c] = mid[c]
    best = run(vec(b))
    return {c: round(b[c], 4) for c in classes}, best
