"""One bin's policy from the state DB: gather demand, lead time, terms and targets, then compute.

Used by the recalculation (which writes the result) and by the explain
endpoint (which shows it); the maths is the shared array code in demand,
forecast, leadtime, policy and abc — the benchmark calls the same functions.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jitstock.server.db.models import Bin, BinEvent
from jitstock.server.db.replenish_models import BinPolicy
from jitstock.server.replenish import allocate, demand, forecast, leadtime, ltd, policy
from jitstock.server.replenish.abc import DEFAULT_SERVICE_LEVELS
from jitstock.server.replenish.terms import DEFAULT_LEAD_TIME_S, supplier_terms

DAY_S = 86_400.0
# Below a week of history and without a prior the bin keeps its configured numbers:
# one day cannot tell a Monday from an average day.
MIN_HISTORY_DAYS = 7
# A SKU the hourly ABC ranking has not seen yet (created since) is "unclassified" and gets
# the B target: its value is unknown, and the middle class neither overstocks a cheap
# part nor starves a key one for the hour until it is ranked.
UNCLASSIFIED = "unclassified"
UNCLASSIFIED_DEFAULT_CLASS = "B"


@dataclass(slots=True, frozen=True)
class Params:
    """Replenishment settings (from ServerSettings) the computation needs."""

    history_days: int = 180
    service_levels: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_SERVICE_LEVELS)
    )
    default_lead_time_s: float = DEFAULT_LEAD_TIME_S
    abc_window_days: int = 90
    # no part's allocated fill target below this (or its class target, if lower)
    fill_floor: float = allocate.DEFAULT_FILL_FLOOR
    # a unit-day on backorder priced in unit-days of stock by the class allocation
    backorder_weight: float = allocate.DEFAULT_BACKORDER_WEIGHT

    @classmethod
    def from_settings(cls, settings: Any) -> Params:
        """Params from a ServerSettings."""
        return cls(
            history_days=settings.replenish_history_days,
            service_levels={
                "A": settings.service_level_a,
                "B": settings.service_level_b,
                "C": settings.service_level_c,
            },
            default_lead_time_s=settings.default_lead_time_s,
            abc_window_days=settings.abc_window_days,
            fill_floor=getattr(
                settings, "replenish_fill_floor", allocate.DEFAULT_FILL_FLOOR
            ),
            backorder_weight=getattr(
                settings,
                "replenish_backorder_weight",
                allocate.DEFAULT_BACKORDER_WEIGHT,
            ),
        )


@dataclass(slots=True, frozen=True)
class PartPlan:
    """What the class allocation needs of a bin (not stored): its draws, order quantity and value."""

    abc_class: str
    lead: npt.NDArray[np.float64]  # (1, draws) demand over the lead time
    lead_next: npt.NDArray[np.float64]  # (1, draws) ... and one day more
    qty: float
    unit_cost: float
    history: npt.NDArray[np.float64]  # daily demand, oldest first
    lead_days: npt.NDArray[np.float64]  # the lead times the draws used


# Per ABC class what the last full run's allocation found (recalc.Recalculator.plan_classes):
# "multiplier" λ (NaN: the class kept its uniform target), "planned_fill", "calibration".
ClassPlans = dict[str, dict[str, float]]


@dataclass(slots=True, frozen=True)
class Computation:
    """A bin's computed policy: the inputs and the numbers, JSON-ready."""

    bin_id: str
    demand_class: str
    inputs: dict[str, Any]
    result: dict[str, Any]
    # the allocation's view of the bin; None where its target is not the class's to allocate
    plan: PartPlan | None = None

    @property
    def reorder_point(self) -> int:
        """What bins.reorder_point should be."""
        return int(self.result["reorder_point"])

    @property
    def order_qty(self) -> int:
        """What bins.order_qty should be."""
        return int(self.result["order_qty"])


def _num(x: Any) -> float | None:
    v = float(np.asarray(x).ravel()[0])
    return None if math.isnan(v) or math.isinf(v) else round(v, 4)


# sku id -> {bin id: learnt daily rate} of the SKU's bins with enough history
SkuRates = dict[str, dict[str, float]]


def _sku_rates(session: Session, sku_id: str) -> dict[str, float]:
    rows = session.execute(
        select(BinPolicy.bin_id, BinPolicy.inputs)
        .join(Bin, Bin.id == BinPolicy.bin_id)
        .where(Bin.sku_id == sku_id)
    ).all()
    return {
        bin_id: float(inputs["demand"]["own_rate"])
        for bin_id, inputs in rows
        if inputs.get("demand", {}).get("history_days", 0) >= forecast.PRIOR_WEIGHT_DAYS
    }


def _sku_prior(
    session: Session, bin: Bin, cache: SkuRates | None = None
) -> float | None:
    """Mean daily rate of the other bins of the same SKU, from their last computation.

    A recalculation pass shares ``cache`` across bins, so a SKU stocked in many
    bins is read once per pass rather than once per bin.
    """
    if cache is None:
        rates = _sku_rates(session, bin.sku_id)
    else:
        if bin.sku_id not in cache:
            cache[bin.sku_id] = _sku_rates(session, bin.sku_id)
        rates = cache[bin.sku_id]
    others = [r for b, r in rates.items() if b != bin.id]
    return float(np.mean(others)) if others else None


def compute_bin(
    session: Session,
    bin: Bin,
    now_ms: int,
    params: Params,
    sku_rates: SkuRates | None = None,
    class_plans: ClassPlans | None = None,
) -> Computation:
    """Compute a bin's policy from its consumption events, its supplier's deliveries and its settings.

    A bin whose target comes from its ABC class gets its share of the class
    target (``allocate``): the class multiplier from ``class_plans`` (the full
    run's allocation), else the one stored with the bin's last computation,
    else — before any full run — the class target itself.
    """
    since = now_ms - params.history_days * demand.DAY_MS
    first = session.scalar(
        select(func.min(BinEvent.ts_ms)).where(
            BinEvent.bin_id == bin.id, BinEvent.ts_ms >= since
        )
    )
    start = int(first) if first is not None else now_ms
    # whole days ending now; a partial first day would read as low demand
    days = int((now_ms - start) // demand.DAY_MS)
    start = now_ms - days * demand.DAY_MS
    ts, qty = demand.load_consumption(session, bin.id, start, now_ms)
    series = demand.bucket(ts, qty, start, now_ms)
    shifts = demand.bucket(ts, qty, start, now_ms, demand.SHIFT_MS)
    if days > 0:
        cls = demand.classify(series)
        fit = forecast.fit(series, np.asarray([demand.DEMAND_CLASSES.index(cls.label)]))
        own_rate, own_sigma = float(fit.rate[0]), float(fit.sigma[0])
        method = forecast.METHODS[int(fit.method[0])]
        alpha, beta = float(fit.alpha[0]), float(fit.beta[0])
    else:
        cls = demand.Classification("smooth", math.inf, 0.0)
        own_rate, own_sigma, method, alpha, beta = 0.0, 0.0, "none", 0.0, 0.0
    prior_source = "manual" if bin.prior_daily_demand is not None else None
    prior = bin.prior_daily_demand
    if prior is None:
        prior = _sku_prior(session, bin, sku_rates)
        prior_source = "sku" if prior is not None else None
    rate, sigma, weight = forecast.blend(
        np.asarray(own_rate),
        np.asarray(own_sigma),
        np.asarray(float(days)),
        np.asarray(np.nan if prior is None else prior),
        np.asarray(np.nan),
    )

    terms = supplier_terms(session, bin, params.default_lead_time_s)
    quoted_days = terms.quoted_lead_time_s / DAY_S
    if bin.supplier_id is not None:
        deliveries = leadtime.load_deliveries(
            session, bin.supplier_id, bin.sku_id, terms.quoted_lead_time_s
        )
    else:
        deliveries = leadtime.Deliveries(
            np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.bool_)
        )
    lt = leadtime.estimate(
        deliveries.sent_to_delivered_days[None, :], np.asarray([quoted_days])
    )
    ack = deliveries.acked_to_delivered_days
    ack = ack[~np.isnan(ack)]

    abc_class = bin.sku.abc_class
    if bin.service_level is not None:
        service, service_source = bin.service_level, "bin"
    elif abc_class in params.service_levels:
        service, service_source = params.service_levels[abc_class], "abc"
    else:
        service = params.service_levels[UNCLASSIFIED_DEFAULT_CLASS]
        service_source = f"{UNCLASSIFIED}_default_{UNCLASSIFIED_DEFAULT_CLASS}"
    fade = float(demand.dormancy_fade(series)[0]) if days > 0 else 1.0
    # live review is per pick: the crossing pick's size is what falls below the trigger
    under = float(demand.undershoot(qty)[0]) if qty.size else 0.0
    kind = bin.policy or policy.DEFAULT_POLICY
    review = bin.review_period_days or 0.0
    price = terms.unit_price
    # lead-time demand draws: the bin's own history over its supplier item's observed lead
    # times (the quote until MIN_DELIVERIES arrived); seeded by the bin id, so an unchanged
    # bin recomputes to the same numbers and the audit log sees no churn
    ltd_draws, ltd_method = None, "normal"
    if days >= MIN_HISTORY_DAYS:
        leads = deliveries.sent_to_delivered_days
        if leads.size < leadtime.MIN_DELIVERIES:
            leads = np.asarray([quoted_days])
        lead_x, next_x, methods = ltd.draws(
            series[None, :],
            leads[None, :],
            service,
            np.random.default_rng(zlib.crc32(bin.id.encode())),
        )
        ltd_draws = (lead_x, next_x)
        ltd_method = ltd.METHODS[int(methods[0])]
    class_target = service
    plan: PartPlan | None = None
    alloc: dict[str, Any] = {}
    if (
        ltd_draws is not None
        and service_source == "abc"
        and kind != "R,S"
        and bin.manual_min is None
        and bin.manual_max is None
    ):
        # the quantity policy.compute orders (a week of demand, packs, MOQ; no EOQ here)
        order_q = float(
            policy.round_order_qty(
                max(float(np.asarray(rate).ravel()[0]), 0.0)
                * policy.DEFAULT_ORDER_CYCLE_DAYS,
                terms.pack_size,
                terms.moq,
            )
        )
        cost = float(price) if price is not None else float("nan")
        plan = PartPlan(
            str(abc_class), ltd_draws[0], ltd_draws[1], order_q, cost, series, leads
        )
        known = _class_plan(session, bin, str(abc_class), class_plans)
        lam = float(known.get("multiplier", float("nan")))
        floor = min(params.fill_floor, service)
        alloc = {
            "class_target": service,
            "class_multiplier": None if math.isnan(lam) else lam,
            "class_planned_fill": known.get("planned_fill"),
            "class_calibration": known.get("calibration"),
            "class_median_cost": known.get("median_cost"),
            # the class target the plan aimed at (raised by the calibration factor)
            "class_aimed_target": known.get("target"),
            "fill_floor": floor,
            "backorder_weight": params.backorder_weight,
        }
        if not math.isnan(lam):
            curve = allocate.curves(ltd_draws[0], ltd_draws[1], np.asarray([order_q]))
            # a bin without a price is valued at its class's median, as in the full run
            value = cost if cost > 0 else float(known.get("median_cost", 1.0))
            own = allocate.part_targets(
                curve, np.asarray([value]), lam, floor, params.backorder_weight
            )
            # the floor as this part's fill: lower where cycle service is the cheaper reading
            alloc["part_floor"] = round(float(allocate.part_floors(curve, floor)[0]), 6)
            service = round(float(own[0]), 6)
            service_source = allocate.SOURCE
        elif known.get("target") is not None:
            # the class kept one target for every part (the allocation would cost more)
            service = round(max(float(known["target"]), service), 6)
            service_source = allocate.SOURCE
    x = policy.PolicyInputs(
        demand=rate,
        sigma_d=sigma,
        lead=float(lt.mean[0]),
        sigma_l=float(lt.sigma[0]),
        service_level=service,
        pack=float(terms.pack_size),
        moq=float(terms.moq),
        policy=float(policy.POLICIES.index(kind)),
        review_days=review,
        manual_min=np.nan if bin.manual_min is None else float(bin.manual_min),
        manual_max=np.nan if bin.manual_max is None else float(bin.manual_max),
        undershoot=under,
        fade=fade,
        ltd_samples=ltd_draws,
    )
    p = policy.compute(x)
    d = float(np.asarray(rate).ravel()[0])
    inputs: dict[str, Any] = {
        "demand": {
            "class": cls.label,
            "adi": _num(cls.adi),
            "cv2": _num(cls.cv2),
            "method": method,
            "alpha": alpha,
            "beta": beta,
            "history_days": days,
            "own_rate": _num(own_rate),
            "own_sigma": _num(own_sigma),
            "prior_rate": prior,
            "prior_source": prior_source,
            "own_weight": _num(np.asarray(weight).ravel()[0]),
            "rate_per_day": _num(d),
            "sigma_per_day": _num(np.asarray(sigma).ravel()[0]),
            "per_shift_mean": _num(shifts.mean()) if shifts.size else 0.0,
            "undershoot": _num(under),
            "dormancy_fade": _num(fade),
            "lead_time_demand_method": ltd_method,
            "units_in_window": _num(series.sum()),
        },
        "lead_time": {
            "supplier_id": bin.supplier_id,
            "quoted_days": _num(quoted_days),
            "mean_days": _num(lt.mean[0]),
            "sigma_days": _num(lt.sigma[0]),
            "deliveries": int(lt.deliveries[0]),
            "source": "measured"
            if lt.deliveries[0] >= leadtime.MIN_DELIVERIES
            else "quoted",
            "on_time_rate": deliveries.on_time_rate(),
            "ack_to_delivery_days": _num(ack.mean()) if ack.size else None,
        },
        "terms": {
            "pack_size": terms.pack_size,
            "moq": terms.moq,
            "unit_price": price,
            "source": terms.source,
        },
        "target": {
            "abc_class": abc_class or UNCLASSIFIED,
            "service_level": service,
            "service_level_source": service_source,
            # the class target this bin's (allocated) target serves, and how it was allocated
            "class_target": class_target,
            **alloc,
            "policy": kind,
            "review_period_days": review,
            "manual_min": bin.manual_min,
            "manual_max": bin.manual_max,
        },
    }
    result = {
        "z": _num(p.z),
        "safety_stock": _num(p.safety_stock),
        # E[X²]/2E[X] of the picks inside the reorder point: on the normal curve only (solved
        # on lead-time demand draws, an order of whole Qs leaves the position above s: 0)
        "undershoot": _num(p.undershoot),
        "reorder_point_exact": _num(p.reorder_point),
        "reorder_point": int(np.asarray(p.reorder_at).ravel()[0]),
        "order_qty": int(np.asarray(p.order_qty).ravel()[0]),
        "order_up_to": _num(p.order_up_to),
        "kanban_cards": int(np.asarray(p.kanban_cards).ravel()[0]),
        "manual_override": bool(np.asarray(p.override).ravel()[0]),
        # True: too little data yet; the bin keeps its configured reorder point and quantity
        "learning": days < MIN_HISTORY_DAYS and prior is None,
    }
    return Computation(bin.id, cls.label, inputs, result, plan)


def _class_plan(
    session: Session, bin: Bin, abc_class: str, class_plans: ClassPlans | None
) -> dict[str, float]:
    """The class's allocation: from this run's plans, else the bin's last computation of the same class."""
    if class_plans is not None and abc_class in class_plans:
        return class_plans[abc_class]
    row = session.get(BinPolicy, bin.id)
    tgt = (row.inputs or {}).get("target", {}) if row is not None else {}
    if tgt.get("abc_class") != abc_class:
        return {}
    stored = {
        "multiplier": "class_multiplier",
        "planned_fill": "class_planned_fill",
        "calibration": "class_calibration",
        "median_cost": "class_median_cost",
        "target": "class_aimed_target",
    }
    out = {k: float(tgt[v]) for k, v in stored.items() if tgt.get(v) is not None}
    if "multiplier" not in out and "target" not in out:
        return {}
    return out
