"""`jitstock bench policy`: jitstock's replenishment against ERP min/max and classic ROP, simulated.

A plant of ``SKUS`` parts over ``DAYS`` days (after ``HISTORY_DAYS`` of
history the policies start from), vectorised across parts with numpy: one
array operation per day serves every part.  The demand mix covers the four
Syntetos–Boylan classes plus trending and dying parts; each part has one
supplier, reliable (lead time near the quote) or not (late by a skewed
amount, sometimes much).  Unmet demand is backordered.

Every policy sees the same demand and the same lead-time stream (the k-th
order of a part takes the k-th pre-drawn lead time), so differences come
from the policy alone:

1. ``minmax`` — static ERP min/max: min = average daily demand (history) ×
   quoted lead time × safety factor, max = min + a typical order; never
   recomputed.  The factor is tuned (bisection) to jitstock's fill rate.
2. ``classic`` — textbook ROP, recomputed weekly: mean daily demand × quoted
   L + z·σ_d·√L (no lead-time spread), z from the class's service level.
3. ``jitstock`` — ``jitstock.server.replenish`` itself, recomputed weekly:
   class, forecast (SES/SBA/TSB fitted per part), lead time learned from the
   deliveries so far, SS = z·√(L·σ_d² + d²·σ_L²) for the class's fill rate.

All three order the same quantity rule (a week of demand, whole packs, MOQ)
so the comparison is about when to order.  Cycle service level counts order
cycles (between consecutive orders) without a stockout day.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from jitstock.server.replenish import abc, demand, forecast, leadtime, ltd, policy

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SKUS = 1000
QUICK_SKUS = 100
DAYS = 365
# History the policies are first fitted on (an ERP planner would look at the last months too).
HISTORY_DAYS = 120
# Rolling window the weekly recalculation fits on.
WINDOW_DAYS = 120
RECALC_EVERY_DAYS = 7
# Deliveries a part's supplier has made before the simulation starts (lead-time history).
PRIOR_DELIVERIES = 6
CLASS_TARGETS = dict(abc.DEFAULT_SERVICE_LEVELS)
SWEEP_TARGETS = (0.80, 0.90, 0.95, 0.97, 0.98, 0.99, 0.995)
MINMAX_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
# Demand patterns and their shares of the plant's parts.
PATTERNS = ("smooth", "erratic", "intermittent", "lumpy", "trend", "obsolete")
PATTERN_SHARES = (0.30, 0.17, 0.22, 0.16, 0.10, 0.05)
QUOTES_DAYS = (2, 3, 5, 7, 10, 14)
PACKS = (1, 5, 10, 25, 50, 100)
RELIABLE_SHARE = 0.6
BISECT_STEPS = 10


@dataclass(slots=True)
class Plant:
    """The simulated parts: demand, costs, suppliers and lead-time streams."""

    demand: FloatArray  # (n, HISTORY + DAYS) units per day
    pattern: IntArray  # index into PATTERNS
    unit_cost: FloatArray
    quoted: FloatArray  # days
    reliable: npt.NDArray[np.bool_]
    lead_times: IntArray  # (n, max orders) days, the k-th order's lead time
    prior_lead: FloatArray  # (n, PRIOR_DELIVERIES) lead times seen before day 0
    pack: FloatArray
    moq: FloatArray
    abc_class: npt.NDArray[np.str_]


def make_plant(n: int, seed: int) -> Plant:
    """Draw a plant of ``n`` parts (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    total = HISTORY_DAYS + DAYS
    pattern = rng.choice(len(PATTERNS), size=n, p=PATTERN_SHARES)
    level = np.exp(rng.normal(np.log(12.0), 1.0, n))  # median 12 units/day
    dem = np.zeros((n, total))
    t = np.arange(total)

    def rows(k: int) -> npt.NDArray[np.bool_]:
        return np.asarray(pattern == k)

    # smooth: Poisson around the level with a little day-to-day gamma noise (CV² well below 0.49)
    m = rows(0) | rows(4) | rows(5)
    g = rng.gamma(20.0, 1 / 20.0, (int(m.sum()), total))
    dem[m] = rng.poisson(level[m, None] * g)
    # erratic: used every day, sizes very uneven (CV² ~ 1)
    m = rows(1)
    g = rng.gamma(0.9, 1 / 0.9, (int(m.sum()), total))
    dem[m] = rng.poisson(level[m, None] * g)
    # intermittent: used on 15-50 % of days, regular sizes
    m = rows(2)
    p = rng.uniform(0.15, 0.5, int(m.sum()))
    size = level[m] / p
    occurs = rng.random((int(m.sum()), total)) < p[:, None]
    dem[m] = np.where(occurs, rng.poisson(size[:, None], occurs.shape), 0)
    # lumpy: used on 5-40 % of days, in very uneven lots
    m = rows(3)
    p = rng.uniform(0.05, 0.4, int(m.sum()))
    size = level[m] / p
    occurs = rng.random((int(m.sum()), total)) < p[:, None]
    lots = rng.gamma(0.7, size[:, None] / 0.7, occurs.shape)
    dem[m] = np.where(occurs, np.round(lots), 0)
    # trend: demand grows or shrinks linearly over the year (-50 % .. +100 %)
    m = rows(4)
    slope = rng.uniform(-0.5, 1.0, int(m.sum()))
    dem[m] = np.round(dem[m] * np.maximum(1 + slope[:, None] * t / total, 0.05))
    # obsolete: use fades out over a month starting somewhere in the simulated year
    m = rows(5)
    end = HISTORY_DAYS + rng.integers(DAYS // 5, DAYS * 3 // 4, int(m.sum()))
    fade = np.clip(1 - (t[None, :] - end[:, None]) / 30, 0, 1)
    dem[m] = np.round(dem[m] * fade)

    unit_cost = np.asarray(
        np.round(np.exp(rng.normal(np.log(4.0), 1.3, n)), 2), np.float64
    )
    quoted = rng.choice(QUOTES_DAYS, n).astype(np.float64)
    reliable = rng.random(n) < RELIABLE_SHARE
    k = DAYS + PRIOR_DELIVERIES
    jitter = rng.normal(0, 0.1, (n, k)) * quoted[:, None]
    # unreliable suppliers: late by a skewed amount, ~mean 40 % of the quote, now and then much more
    late = rng.gamma(1.2, 0.35, (n, k)) * quoted[:, None]
    lt = np.where(reliable[:, None], quoted[:, None] + jitter, quoted[:, None] + late)
    lt = np.maximum(np.round(lt), 1).astype(np.int64)
    hist = dem[:, :HISTORY_DAYS].mean(axis=1)
    packs = np.asarray(PACKS, dtype=np.float64)
    # pack: the largest standard pack not above two days of demand
    pack = packs[np.clip(np.searchsorted(packs, 2 * hist, side="right") - 1, 0, None)]
    moq = np.where(rng.random(n) < 0.2, 2 * pack, 0.0)
    value = dem[:, :HISTORY_DAYS].sum(axis=1) * unit_cost
    return Plant(
        demand=dem,
        pattern=pattern.astype(np.int64),
        unit_cost=unit_cost,
        quoted=quoted,
        reliable=reliable,
        lead_times=lt[:, PRIOR_DELIVERIES:],
        prior_lead=lt[:, :PRIOR_DELIVERIES].astype(np.float64),
        pack=pack,
        moq=moq,
        abc_class=abc.abc_classes(value),
    )


@dataclass(slots=True)
class Forecasts:
    """Per recalculation day: jitstock's forecast and classic's window statistics (policy-independent)."""

    days: list[int]
    rate: list[FloatArray]
    sigma: list[FloatArray]
    undershoot: list[FloatArray]
    mean: list[FloatArray]
    std: list[FloatArray]
    window: list[FloatArray]
    fade: list[FloatArray]


def precompute_forecasts(plant: Plant) -> Forecasts:
    """Fit every part on its rolling window at each recalculation day (same code as the server)."""
    out = Forecasts([], [], [], [], [], [], [], [])
    for day in range(0, DAYS, RECALC_EVERY_DAYS):
        end = HISTORY_DAYS + day
        window = plant.demand[:, end - WINDOW_DAYS : end]
        classes = demand.classify_codes(window)
        fit = forecast.fit(window, classes)
        out.days.append(day)
        out.rate.append(fit.rate)
        out.sigma.append(fit.sigma)
        # the simulation reviews daily: one "pick" is a day's demand
        out.undershoot.append(demand.undershoot(window))
        out.mean.append(window.mean(axis=1))
        out.std.append(window.std(axis=1, ddof=1))
        out.window.append(window)
        out.fade.append(demand.dormancy_fade(window))
    return out


# (day, plant, lead-time samples so far) -> (reorder level s, order-up-to S or NaN for "order Q", Q)
Rule = Callable[[int, FloatArray], tuple[FloatArray, FloatArray, FloatArray]]


@dataclass(slots=True)
class Outcome:
    """What a simulated year produced, per part."""

    demand: FloatArray
    served: FloatArray  # units served from stock on the day asked
    on_hand_days: FloatArray  # sum over days of end-of-day on hand
    stockout_days: FloatArray
    orders: FloatArray
    cycles: FloatArray
    cycles_short: FloatArray
    backlog_days: FloatArray  # sum over days of units backordered at the end of the day


def simulate(plant: Plant, rule: Rule) -> Outcome:
    """Run one policy over the year; ``rule`` is asked for (s, S, Q) every RECALC_EVERY_DAYS."""
    n = plant.demand.shape[0]
    dem = plant.demand[:, HISTORY_DAYS:]
    horizon = DAYS + int(plant.lead_times.max()) + 2
    pipe = np.zeros((n, horizon))
    start_rate = plant.demand[:, HISTORY_DAYS - 28 : HISTORY_DAYS].mean(axis=1)
    on_hand = np.ceil(
        start_rate * (plant.quoted + 7)
    )  # a sensible opening stock for every policy
    backlog = np.zeros(n)
    on_order = np.zeros(n)
    k = np.zeros(n, dtype=np.int64)
    rows = np.arange(n)
    out = Outcome(*(np.zeros(n) for _ in range(8)))
    short_in_cycle = np.zeros(n, dtype=bool)
    # lead times observed so far (arrived orders), newest last; NaN = not yet arrived
    placed_lt = np.full((n, plant.lead_times.shape[1]), np.nan)
    arrive_day = np.full((n, plant.lead_times.shape[1]), np.inf)
    s = big_s = q = np.zeros(n)
    for t in range(DAYS):
        if t % RECALC_EVERY_DAYS == 0:
            seen = np.where(arrive_day <= t, placed_lt, np.nan)
            s, big_s, q = rule(t, seen)
        arrived = pipe[:, t]
        on_hand += arrived
        on_order -= arrived
        late_served = np.minimum(on_hand, backlog)
        on_hand -= late_served
        backlog -= late_served
        d = dem[:, t]
        served = np.minimum(on_hand, d)
        on_hand -= served
        short = d - served
        backlog += short
        out.demand += d
        out.served += served
        out.stockout_days += short > 0
        short_in_cycle |= short > 0
        position = on_hand + on_order - backlog
        need = position <= s
        if need.any():
            gap = s - position + 1
            by_q = q * np.maximum(1, np.ceil(gap / np.maximum(q, 1)))
            to_s = big_s - position
            qty = np.where(np.isnan(big_s), by_q, np.maximum(to_s, q))
            qty = np.where(
                need, policy.round_order_qty(qty, plant.pack, plant.moq), 0.0
            )
            idx = rows[need]
            kk = np.minimum(k[idx], plant.lead_times.shape[1] - 1)
            lt = plant.lead_times[idx, kk]
            np.add.at(pipe, (idx, np.minimum(t + lt, horizon - 1)), qty[idx])
            on_order[idx] += qty[idx]
            placed_lt[idx, kk] = lt
            arrive_day[idx, kk] = t + lt
            k[idx] += 1
            out.orders[idx] += 1
            had_cycle = out.orders[idx] > 1
            out.cycles[idx] += had_cycle
            out.cycles_short[idx] += had_cycle & short_in_cycle[idx]
            short_in_cycle[idx] = False
        out.on_hand_days += on_hand
        out.backlog_days += backlog
    return out


def _week_q(rate: FloatArray, plant: Plant) -> FloatArray:
    return policy.round_order_qty(
        rate * policy.DEFAULT_ORDER_CYCLE_DAYS, plant.pack, plant.moq
    )


def jitstock_rule(plant: Plant, fc: Forecasts, targets: FloatArray) -> Rule:
    """jitstock's policy: the server's replenish code on every part at once."""
    nan = np.full(plant.demand.shape[0], np.nan)

    def rule(t: int, seen: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        i = fc.days.index(t)
        # lead-time history: deliveries before day 0, then those of this run, oldest first
        samples = _compact(np.concatenate([plant.prior_lead, seen], axis=1))
        lt = leadtime.estimate(samples, plant.quoted)
        var = lt.mean * fc.sigma[i] ** 2 + fc.rate[i] ** 2 * lt.sigma**2
        draws, _ = ltd.draws(
            fc.window[i],
            samples,
            fc.rate[i] * lt.mean,
            var,
            np.random.default_rng([seed_of(plant), t]),
            # the simulation reviews daily: the crossing "pick" is a day's demand
            pick_sizes=fc.window[i],
        )
        p = policy.compute(
            policy.PolicyInputs(
                demand=fc.rate[i],
                sigma_d=fc.sigma[i],
                lead=lt.mean,
                sigma_l=lt.sigma,
                service_level=targets,
                pack=plant.pack,
                moq=plant.moq,
                undershoot=fc.undershoot[i],
                fade=fc.fade[i],
                ltd_samples=draws,
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


def summarise(
    plant: Plant, o: Outcome, mask: npt.NDArray[np.bool_] | None = None
) -> dict[str, float]:
    """Fill rate, cycle service level, inventory, stockout days, orders over the masked parts."""
    m = np.ones(plant.demand.shape[0], dtype=bool) if mask is None else mask
    dem = float(o.demand[m].sum())
    cycles = float(o.cycles[m].sum())
    return {
        "skus": int(m.sum()),
        "fill_rate": round(float(o.served[m].sum()) / dem, 5) if dem else 1.0,
        "cycle_service_level": round(1 - float(o.cycles_short[m].sum()) / cycles, 5)
        if cycles
        else 1.0,
        "avg_on_hand_units": round(float(o.on_hand_days[m].sum()) / DAYS, 1),
        "avg_on_hand_value": round(
            float((o.on_hand_days[m] * plant.unit_cost[m]).sum()) / DAYS, 1
        ),
        "stockout_days": int(o.stockout_days[m].sum()),
        "orders": int(o.orders[m].sum()),
        **_costs(plant, o, m),
    }


# Cost rates of the total-cost comparison: holding 25 % of the unit cost a year, a fixed
# cost per order line, and a backorder penalty per unit and day short (10 % of the unit
# cost: a part missing at the line costs far more than the part).
HOLDING_RATE_PER_YEAR = 0.25
ORDER_COST = 25.0
BACKORDER_RATE_PER_DAY = 0.10


def _costs(plant: Plant, o: Outcome, m: npt.NDArray[np.bool_]) -> dict[str, float]:
    dem_value = float((o.demand[m] * plant.unit_cost[m]).sum())
    hold = float((o.on_hand_days[m] * plant.unit_cost[m]).sum()) / 365.0
    hold *= HOLDING_RATE_PER_YEAR
    order = float(o.orders[m].sum()) * ORDER_COST
    back = (
        float((o.backlog_days[m] * plant.unit_cost[m]).sum()) * BACKORDER_RATE_PER_DAY
    )
    return {
        "value_weighted_fill": round(
            float((o.served[m] * plant.unit_cost[m]).sum()) / dem_value, 5
        )
        if dem_value
        else 1.0,
        "holding_cost": round(hold, 0),
        "ordering_cost": round(order, 0),
        "backorder_cost": round(back, 0),
        # the sum of the shown (rounded) parts, so the table adds up
        "total_cost": round(hold, 0) + round(order, 0) + round(back, 0),
    }


def breakdown(plant: Plant, o: Outcome) -> dict[str, Any]:
    """Overall, per ABC class and per demand pattern."""
    out: dict[str, Any] = {"overall": summarise(plant, o)}
    for cls in ("A", "B", "C"):
        out[f"abc_{cls}"] = summarise(plant, o, plant.abc_class == cls)
    for i, name in enumerate(PATTERNS):
        out[name] = summarise(plant, o, plant.pattern == i)
    return out


def _tune(
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


def _tune_per_class(
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


def run_seed(seed: int, n: int, curve_too: bool) -> dict[str, Any]:
    """One seed: jitstock and every baseline at jitstock's per-class fill."""
    started = time.monotonic()
    plant = make_plant(n, seed)
    fc = precompute_forecasts(plant)
    targets = abc.service_levels(plant.abc_class, CLASS_TARGETS)
    jit = simulate(plant, jitstock_rule(plant, fc, targets))
    fills = {c: summarise(plant, jit, plant.abc_class == c)["fill_rate"] for c in "ABC"}
    k, informed = _tune_per_class(
        lambda kk: simulate(plant, informed_rule(plant, fc, kk)), plant, 0.0, 6.0, fills
    )
    fw, weekly = _tune_per_class(
        lambda f: simulate(plant, minmax_weekly_rule(plant, fc, f)),
        plant,
        0.0,
        8.0,
        fills,
    )
    fs, static = _tune_per_class(
        lambda f: simulate(plant, minmax_rule(plant, f)), plant, 0.0, 8.0, fills
    )
    classic = simulate(plant, classic_rule(plant, fc, targets))
    results = {
        "jitstock": breakdown(plant, jit),
        "textbook_rop_observed_lt_k_per_class": breakdown(plant, informed),
        "minmax_weekly_per_class": breakdown(plant, weekly),
        "minmax_static_per_class": breakdown(plant, static),
        "classic_rop_quoted_lt": breakdown(plant, classic),
    }
    jv = results["jitstock"]["overall"]["avg_on_hand_value"]
    out: dict[str, Any] = {
        "seed": seed,
        "class_targets": CLASS_TARGETS,
        "jitstock_fill": {
            **fills,
            **{p: results["jitstock"][p]["fill_rate"] for p in PATTERNS},
        },
        "tuned": {
            "textbook_k": k,
            "minmax_weekly_factor": fw,
            "minmax_static_factor": fs,
        },
        "saving_vs_textbook_rop": round(
            1
            - jv
            / results["textbook_rop_observed_lt_k_per_class"]["overall"][
                "avg_on_hand_value"
            ],
            4,
        ),
        "saving_vs_minmax_weekly": round(
            1 - jv / results["minmax_weekly_per_class"]["overall"]["avg_on_hand_value"],
            4,
        ),
        "saving_vs_minmax_static": round(
            1 - jv / results["minmax_static_per_class"]["overall"]["avg_on_hand_value"],
            4,
        ),
        "total_cost": {p: r["overall"]["total_cost"] for p, r in results.items()},
        "policies": results,
    }
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def parse_seeds(text: str) -> list[int]:
    """'1-15' or '1,3,5' or '2' -> the seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        seeds.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return seeds


def run_seeds(args: argparse.Namespace) -> dict[str, Any]:
    """``--seeds 1-15``: every seed, and a summary of where the targets hold."""
    started = time.monotonic()
    n = QUICK_SKUS if args.quick else SKUS
    per_seed = [run_seed(sd, n, False) for sd in parse_seeds(args.seeds)]
    summary = []
    for r in per_seed:
        worst = min(r["jitstock_fill"][c] - CLASS_TARGETS[c] for c in "ABC")
        cheapest = min(r["total_cost"], key=r["total_cost"].get)
        summary.append(
            {
                "seed": r["seed"],
                "fill_A": r["jitstock_fill"]["A"],
                "fill_B": r["jitstock_fill"]["B"],
                "fill_C": r["jitstock_fill"]["C"],
                "fill_lumpy": r["jitstock_fill"]["lumpy"],
                "worst_class_gap_pt": round(100 * worst, 2),
                "saving_vs_textbook_rop": r["saving_vs_textbook_rop"],
                "saving_vs_minmax_weekly": r["saving_vs_minmax_weekly"],
                "saving_vs_minmax_static": r["saving_vs_minmax_static"],
                "cheapest_total_cost": cheapest,
            }
        )
    return {
        "skus": n,
        "days": DAYS,
        "cost_rates": {
            "holding_per_year": HOLDING_RATE_PER_YEAR,
            "per_order": ORDER_COST,
            "backorder_per_unit_day_of_unit_cost": BACKORDER_RATE_PER_DAY,
        },
        "summary": summary,
        "seeds": per_seed,
        "seconds": round(time.monotonic() - started, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; JSON-ready nested results."""
    if getattr(args, "seeds", None):
        return run_seeds(args)
    started = time.monotonic()
    # 0 is a valid seed: only a missing one falls back to 1
    raw = getattr(args, "seed", None)
    seed = 1 if raw is None else int(raw)
    n = QUICK_SKUS if args.quick else SKUS
    plant = make_plant(n, seed)
    fc = precompute_forecasts(plant)
    targets = abc.service_levels(plant.abc_class, CLASS_TARGETS)

    jit = simulate(plant, jitstock_rule(plant, fc, targets))
    jit_fill = summarise(plant, jit)["fill_rate"]
    classic = simulate(plant, classic_rule(plant, fc, targets))
    factor, minmax = _tune(
        lambda f: simulate(plant, minmax_rule(plant, f)), plant, 0.0, 8.0, jit_fill
    )
    scale, classic_eq = _tune(
        lambda c: simulate(plant, classic_rule(plant, fc, targets, c)),
        plant,
        0.0,
        6.0,
        jit_fill,
    )
    results: dict[str, Any] = {
        "jitstock": breakdown(plant, jit),
        "classic_rop": breakdown(plant, classic),
        "classic_rop_equal_fill": breakdown(plant, classic_eq),
        "minmax_equal_fill": breakdown(plant, minmax),
    }
    curve: dict[str, list[dict[str, float]]] = {
        "jitstock": [],
        "classic_rop": [],
        "minmax": [],
    }
    for target in SWEEP_TARGETS:
        flat = np.full(n, target)
        for name, rule in (
            ("jitstock", jitstock_rule(plant, fc, flat)),
            ("classic_rop", classic_rule(plant, fc, flat)),
        ):
            s = summarise(plant, simulate(plant, rule))
            curve[name].append({"target": target, **s})
    for f in MINMAX_FACTORS:
        s = summarise(plant, simulate(plant, minmax_rule(plant, f)))
        curve["minmax"].append({"factor": f, **s})
    jv = results["jitstock"]["overall"]["avg_on_hand_value"]
    mv = results["minmax_equal_fill"]["overall"]["avg_on_hand_value"]
    cv = results["classic_rop_equal_fill"]["overall"]["avg_on_hand_value"]
    per_class = {
        c: {
            "target": CLASS_TARGETS[c],
            "achieved_fill_rate": results["jitstock"][f"abc_{c}"]["fill_rate"],
        }
        for c in ("A", "B", "C")
    }
    return {
        "seed": seed,
        "skus": n,
        "days": DAYS,
        "class_targets": CLASS_TARGETS,
        "mix": {p: int((plant.pattern == i).sum()) for i, p in enumerate(PATTERNS)},
        "reliable_suppliers_share": round(float(plant.reliable.mean()), 3),
        "minmax_factor_at_equal_fill": round(factor, 4),
        "classic_z_scale_at_equal_fill": round(scale, 4),
        "inventory_saving_vs_minmax": round(1 - jv / mv, 4) if mv else None,
        "inventory_saving_vs_classic": round(1 - jv / cv, 4) if cv else None,
        "jitstock_per_class": per_class,
        "policies": results,
        "curve": curve,
        "seconds": round(time.monotonic() - started, 1),
    }


def print_result(result: dict[str, Any]) -> None:
    """Tables: the policies overall and per class, the per-class targets, the curve."""
    if "summary" in result:
        print(f"  {result['skus']} SKUs x {result['days']} days, {result['seconds']} s")
        keys = list(result["summary"][0])
        print("  " + "".join(f"{k[:22]:>24}" for k in keys))
        for row in result["summary"]:
            print("  " + "".join(f"{str(row[k]):>24}" for k in keys))
        return
    print(
        f"  {result['skus']} SKUs x {result['days']} days, seed {result['seed']}, "
        f"{result['seconds']} s; min/max factor tuned to {result['minmax_factor_at_equal_fill']}"
    )
    cols = (
        "fill_rate",
        "cycle_service_level",
        "avg_on_hand_units",
        "avg_on_hand_value",
        "stockout_days",
        "orders",
    )
    groups = ["overall", "abc_A", "abc_B", "abc_C", *PATTERNS]
    print(f"  {'policy':<24}{'group':<14}" + "".join(f"{c[:18]:>20}" for c in cols))
    for name, res in result["policies"].items():
        for g in groups:
            row = res[g]
            print(f"  {name:<24}{g:<14}" + "".join(f"{row[c]:>20,}" for c in cols))
    print(
        f"  inventory saving at equal fill rate: vs min/max {result['inventory_saving_vs_minmax']:.1%}, "
        f"vs classic ROP {result['inventory_saving_vs_classic']:.1%}"
    )
    for c, v in result["jitstock_per_class"].items():
        print(
            f"  class {c}: target {v['target']:.2%}  achieved fill {v['achieved_fill_rate']:.2%}"
        )
    print("  service-vs-inventory curve (fill rate -> avg on-hand value):")
    for name, points in result["curve"].items():
        pts = ", ".join(
            f"{p['fill_rate']:.3f}->{p['avg_on_hand_value']:,.0f}" for p in points
        )
        print(f"    {name:<12} {pts}")
