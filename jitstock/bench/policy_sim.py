"""The policy benchmark's plant and simulation: demand, suppliers, one simulated year, the outcome.

A plant of ``SKUS`` parts over ``DAYS`` days (after ``HISTORY_DAYS`` of
history the policies start from), vectorised across parts with numpy: one
array operation per day serves every part.  The demand mix covers the four
Syntetos–Boylan classes plus trending and dying parts; each part has one
supplier, reliable (lead time near the quote) or not (late by a skewed
amount, sometimes much).  Unmet demand is backordered.  Every policy sees the
same demand and the same lead-time stream (the k-th order of a part takes the
k-th pre-drawn lead time), so differences come from the policy alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from jitstock.server.replenish import abc, demand, forecast, policy

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
# Demand patterns and their shares of the plant's parts.
PATTERNS = ("smooth", "erratic", "intermittent", "lumpy", "trend", "obsolete")
PATTERN_SHARES = (0.30, 0.17, 0.22, 0.16, 0.10, 0.05)
QUOTES_DAYS = (2, 3, 5, 7, 10, 14)
PACKS = (1, 5, 10, 25, 50, 100)
RELIABLE_SHARE = 0.6


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
            # deliveries of day t - 1 and before have arrived (they come at the day's end)
            seen = np.where(arrive_day < t, placed_lt, np.nan)
            s, big_s, q = rule(t, seen)
        d = dem[:, t]
        served = np.minimum(on_hand, d)
        on_hand -= served
        short = d - served
        backlog += short
        # deliveries arrive at the end of the day, after its demand: an order placed after
        # day t's demand with lead time L must cover days t+1 .. t+L, L days of demand — what
        # a lead time measured from order to receipt means in the server's lead-time demand
        arrived = pipe[:, t]
        on_hand += arrived
        on_order -= arrived
        late_served = np.minimum(on_hand, backlog)
        on_hand -= late_served
        backlog -= late_served
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
