"""Recalculation: on a schedule, and when a bin's demand shifts or its supplier delivers.

Each run computes the policy of the bins concerned (bin_policy.compute_bin),
stores the computation in ``bin_policies`` and, when the reorder point or
order quantity moves by more than ``CHANGE_TOLERANCE``, writes the new values
to the bin with an audit row (action ``bin.policy``) holding the reason, the
old and new numbers and every input — then asks the reorder rule, in the same
transaction, whether the bin must order now.

Triggers, checked every ``check_s`` (cheap: two GROUP BY queries, never per
reading):

- demand shift: units consumed since the last computation differ from the
  forecast by more than ``SHIFT_Z`` standard errors and ``SHIFT_MIN_RATIO``;
- delivery: a supplier item of the bin had an order arrive since then (the
  lead-time estimate learns from it);
- schedule: every ``interval_s`` all bins, after re-ranking the SKUs by ABC.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jitstock.clock import REAL_CLOCK, Clock, wait
from jitstock.server import reorder
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import Bin, BinEvent, Order, Sku
from jitstock.server.db.replenish_models import BinPolicy
from jitstock.server.db.session import SessionFactory, transaction
from jitstock.server.replenish import abc, allocate, calibrate, demand, leadtime
from jitstock.server.replenish.allocate import FloatArray
from jitstock.server.replenish.bin_policy import (
    ClassPlans,
    Computation,
    Params,
    PartPlan,
    SkuRates,
    compute_bin,
)

# Share of one core the scheduled recalculation may take; ingest and the API keep the rest.
BACKGROUND_DUTY = 0.2
log = logging.getLogger(__name__)

ACTOR = "replenish"
# A computed reorder point within 5 % (and 1 unit) of the current one is not worth a change:
# churn in the audit log would hide the changes that matter.
CHANGE_TOLERANCE = 0.05
# Demand shift: at least this many standard errors away from the forecast ...
SHIFT_Z = 3.0
# ... and at least this far in relative terms (ignores tiny rates where σ is small) ...
SHIFT_MIN_RATIO = 0.25
# ... over at least this much time since the last computation (one shift is noise).
SHIFT_MIN_DAYS = 1.0
# Hourly full runs: demand is forecast per day, so more often only adds load.
DEFAULT_INTERVAL_S = 3600.0
# The shift / delivery check is two aggregate queries: every five minutes costs nothing.
DEFAULT_CHECK_S = 300.0


def demand_shifted(units: float, days: float, rate: float, sigma: float) -> bool:
    """Whether ``units`` consumed over ``days`` contradict a forecast of ``rate`` ± ``sigma`` per day."""
    if days < SHIFT_MIN_DAYS:
        return False
    observed = units / days
    # a zero σ (perfectly regular history) still allows Poisson-sized noise
    se = max(sigma, np.sqrt(max(rate, 1.0))) / np.sqrt(days)
    gap = abs(observed - rate)
    return bool(gap > SHIFT_Z * se and gap > SHIFT_MIN_RATIO * max(rate, 1e-9))


def _moved(old: int, new: int) -> bool:
    return abs(new - old) > max(1.0, CHANGE_TOLERANCE * abs(old))


class Recalculator:
    """Keeps every bin's reorder point and order quantity in step with its data."""

    def __init__(
        self,
        session_factory: SessionFactory,
        params: Params | None = None,
        clock: Clock = REAL_CLOCK,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        check_s: float = DEFAULT_CHECK_S,
        on_change: Callable[[list[str], list[str]], None] | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.params = params or Params()
        self.clock = clock
        self.interval_s = interval_s
        self.check_s = check_s
        # called with (changed bin ids, new order ids) after a committed run
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_check_ms: int | None = None
        # the last full run's allocation per ABC class (bin_policy.ClassPlans)
        self.class_plans: ClassPlans | None = None

    # --- public runs -------------------------------------------------------

    def recalc_all(
        self, reason: str = "schedule", *, background: bool = False
    ) -> list[str]:
        """Re-rank ABC, then recompute every bin; returns the ids of bins whose numbers changed."""
        now = self.clock.time_ms()
        with transaction(self.session_factory) as s:
            self.update_abc(s, now)
            ids = list(s.scalars(select(Bin.id).order_by(Bin.id)))
        self.class_plans = self.plan_classes(ids, background=background)
        return self.recalc_bins(ids, reason, background=background)

    def plan_classes(
        self, bin_ids: Sequence[str], *, background: bool = False
    ) -> ClassPlans:
        """Allocate each ABC class's fill target over its bins (allocate.allocate); λ per class.

        Every bin's lead-time demand draws are computed (read-only), class A's
        target is raised by its plan→achieved shortfall measured on the bins'
        own windows (calibrate), and the class multipliers are returned for
        the bins' computations to pick their own targets with.
        """
        plans: list[PartPlan] = []
        now = self.clock.time_ms()
        sku_rates: SkuRates = {}
        for bin_id in bin_ids:
            started = time.perf_counter()
            try:
                with transaction(self.session_factory, readonly=True) as s:
                    b = s.get(Bin, bin_id)
                    comp = (
                        compute_bin(s, b, now, self.params, sku_rates, {})
                        if b is not None
                        else None
                    )
                if comp is not None and comp.plan is not None:
                    plans.append(comp.plan)
            except Exception:
                log.exception("allocation input of bin %s failed", bin_id)
            if background and self._stop.wait(
                (time.perf_counter() - started) * (1 / BACKGROUND_DUTY - 1)
            ):
                break
        return plan_from(plans, self.params)

    def recalc_bins(
        self, bin_ids: Sequence[str], reason: str, *, background: bool = False
    ) -> list[str]:
        """Recompute the given bins, one transaction each; returns the ids that changed.

        In the background thread the pass is throttled to BACKGROUND_DUTY of one
        core's time, so an hourly pass over thousands of bins never starves ingest
        (they share the interpreter lock and, on SQLite, the write lock).
        """
        changed: list[str] = []
        orders: list[str] = []
        sku_rates: SkuRates = {}
        for bin_id in bin_ids:
            started = time.perf_counter()
            try:
                moved, order = self._recalc_one(bin_id, reason, sku_rates)
            except Exception:
                log.exception("policy recalculation of bin %s failed", bin_id)
                moved, order = False, None
            if background and self._stop.wait(
                (time.perf_counter() - started) * (1 / BACKGROUND_DUTY - 1)
            ):
                break
            if moved:
                changed.append(bin_id)
            if order is not None:
                orders.append(order)
        if (changed or orders) and self.on_change is not None:
            self.on_change(changed, orders)
        return changed

    def check(self) -> list[str]:
        """Recompute bins whose demand shifted or whose supplier delivered since their last computation."""
        now = self.clock.time_ms()
        since = self._last_check_ms if self._last_check_ms is not None else 0
        self._last_check_ms = now
        with transaction(self.session_factory, readonly=True) as s:
            shifted = self._shifted_bins(s, now)
            delivered = self._delivered_bins(s, since)
        changed = self.recalc_bins(sorted(shifted), "demand_shift", background=True)
        rest = sorted(delivered - shifted)
        return changed + self.recalc_bins(rest, "delivery", background=True)

    def update_abc(self, session: Session, now_ms: int) -> dict[str, str]:
        """Rank SKUs by consumption value over the ABC window; store and return their classes."""
        since = now_ms - self.params.abc_window_days * demand.DAY_MS
        used = dict(
            session.execute(
                select(Bin.sku_id, func.coalesce(func.sum(-BinEvent.delta), 0))
                .join(Bin, Bin.id == BinEvent.bin_id)
                .where(BinEvent.kind == "consumption", BinEvent.ts_ms >= since)
                .group_by(Bin.sku_id)
            ).all()
        )
        skus = list(session.scalars(select(Sku).order_by(Sku.id)))
        values = [float(used.get(k.id, 0)) * float(k.unit_cost or 0.0) for k in skus]
        classes = abc.abc_classes(values)
        out = {}
        for sku, cls in zip(skus, classes.tolist(), strict=True):
            if sku.abc_class != cls:
                sku.abc_class = cls
            out[sku.id] = cls
        return out

    # --- thread --------------------------------------------------------------

    def start(self) -> None:
        """Run the schedule and the checks in a background thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="replenish", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        next_full = self.clock.monotonic()
        while not self._stop.is_set():
            try:
                if self.clock.monotonic() >= next_full:
                    self.recalc_all("schedule", background=True)
                    self._last_check_ms = self.clock.time_ms()
                    next_full = self.clock.monotonic() + self.interval_s
                else:
                    self.check()
            except Exception:
                log.exception("replenishment run failed; retrying at the next check")
            if wait(self.clock, self.check_s, self._stop):
                return

    # --- internals -----------------------------------------------------------

    def _shifted_bins(self, s: Session, now_ms: int) -> set[str]:
        rows = s.execute(
            select(
                BinPolicy.bin_id,
                BinPolicy.computed_ms,
                BinPolicy.inputs,
                func.coalesce(func.sum(-BinEvent.delta), 0),
            )
            .outerjoin(
                BinEvent,
                (BinEvent.bin_id == BinPolicy.bin_id)
                & (BinEvent.kind == "consumption")
                & (BinEvent.ts_ms >= BinPolicy.computed_ms),
            )
            .group_by(BinPolicy.bin_id, BinPolicy.computed_ms, BinPolicy.inputs)
        ).all()
        out = set()
        for bin_id, computed, inputs, units in rows:
            dem = inputs.get("demand", {})
            days = (now_ms - computed) / demand.DAY_MS
            rate = float(dem.get("rate_per_day") or 0.0)
            sigma = float(dem.get("sigma_per_day") or 0.0)
            if demand_shifted(float(units), days, rate, sigma):
                out.add(bin_id)
        return out

    def _delivered_bins(self, s: Session, since_ms: int) -> set[str]:
        arrived = leadtime._arrival_ms(s)
        pairs = s.execute(
            select(Order.supplier_id, Order.sku_id)
            .where(Order.state.in_(leadtime.ARRIVED_STATES), arrived >= since_ms)
            .distinct()
        ).all()
        out: set[str] = set()
        for supplier, sku in pairs:
            out.update(
                s.scalars(
                    select(Bin.id).where(Bin.supplier_id == supplier, Bin.sku_id == sku)
                )
            )
        return out

    def _recalc_one(
        self, bin_id: str, reason: str, sku_rates: SkuRates | None = None
    ) -> tuple[bool, str | None]:
        now = self.clock.time_ms()
        # Compute in a read-only transaction: on SQLite a writing one would hold the
        # database's only write lock (and block ingest) for the whole computation.
        with transaction(self.session_factory, readonly=True) as s:
            b = s.get(Bin, bin_id)
            if b is None:
                return False, None
            comp = compute_bin(s, b, now, self.params, sku_rates, self.class_plans)
        with transaction(self.session_factory) as s:
            b = reorder.lock_bin(s, bin_id)
            if b is None:
                return False, None
            moved = self._store(s, b, comp, reason, now)
            order = None
            if moved:
                order = reorder.maybe_reorder(
                    s, b, now, {"policy": {"reason": reason, "at_ms": now}}
                )
            return moved, order.id if order is not None else None

    def _store(
        self, s: Session, b: Bin, comp: Computation, reason: str, now: int
    ) -> bool:
        row = s.get(BinPolicy, b.id)
        override = bool(comp.result["manual_override"])
        was_override = bool(row.result.get("manual_override")) if row else False
        new_rop, new_q = comp.reorder_point, max(1, comp.order_qty)
        learning = bool(comp.result.get("learning")) and not override
        moved = not learning and (
            _moved(b.reorder_point, new_rop)
            or _moved(b.order_qty, new_q)
            or override != was_override
            or (override and (b.reorder_point, b.order_qty) != (new_rop, new_q))
        )
        why: str | None = row.change_reason if row else None
        changed_ms: int | None = row.changed_ms if row else None
        if moved:
            before: dict[str, Any] = {
                "reorder_point": b.reorder_point,
                "order_qty": b.order_qty,
            }
            b.reorder_point, b.order_qty = new_rop, new_q
            why = _explain_change(reason, row, comp, before)
            changed_ms = now
            record_audit(
                s,
                at_ms=now,
                actor=ACTOR,
                action="bin.policy",
                entity="bin",
                entity_id=b.id,
                detail={
                    "reason": reason,
                    "why": why,
                    "from": before,
                    "to": {"reorder_point": new_rop, "order_qty": new_q},
                    "inputs": comp.inputs,
                    "result": comp.result,
                },
            )
        if row is None:
            row = BinPolicy(bin_id=b.id)
            s.add(row)
        row.computed_ms = now
        row.reason = reason
        row.demand_class = comp.demand_class
        row.inputs = comp.inputs
        row.result = comp.result
        row.changed_ms = changed_ms
        row.change_reason = why
        return moved


def plan_from(plans: Sequence[PartPlan], params: Params) -> ClassPlans:
    """Per class λ, planned fill, calibration factor and median unit value from the bins' plans."""
    out: ClassPlans = {}
    by_len: dict[tuple[int, int], list[PartPlan]] = {}
    for p in plans:
        by_len.setdefault((p.lead.shape[1], p.history.shape[0]), []).append(p)
    # bins share one draw count; histories of different lengths are back-tested apart
    draws = max(by_len, key=lambda k: len(by_len[k]))[0] if by_len else 0
    same = [p for p in plans if p.lead.shape[1] == draws]
    if not same:
        return out
    classes = np.asarray([p.abc_class for p in same])
    cost = np.asarray([p.unit_cost for p in same], np.float64)
    qty = np.asarray([p.qty for p in same], np.float64)
    # the back-test per history length (stacked rows must be as long), pooled per class
    pl: list[FloatArray] = []
    rl: list[FloatArray] = []
    names: list[str] = []
    for (d, _t), group in by_len.items():
        hi = [
            p
            for p in group
            if d == draws
            and calibrate.needs_backtest(params.service_levels.get(p.abc_class, 0))
        ]
        if not hi or hi[0].history.shape[0] < 2:
            continue
        width = max(p.lead_days.shape[0] for p in hi)
        leads = np.full((len(hi), width), np.nan)
        for i, p in enumerate(hi):
            leads[i, : p.lead_days.shape[0]] = p.lead_days
        planned, realized = calibrate.shortfall(
            np.stack([p.history for p in hi]),
            leads,
            np.asarray([params.service_levels[p.abc_class] for p in hi]),
            np.asarray([p.qty for p in hi]),
            np.random.default_rng(len(hi)),
        )
        pl.append(planned)
        rl.append(realized)
        names.extend(p.abc_class for p in hi)
    factors = (
        calibrate.class_factors(
            np.concatenate(pl), np.concatenate(rl), names, params.service_levels
        )
        if names
        else {}
    )
    # a bin without a price is valued at its class's median (as a single bin is later)
    medians = {}
    for name in set(classes.tolist()):
        m = classes == name
        good = cost[m][np.isfinite(cost[m]) & (cost[m] > 0)]
        medians[name] = float(np.median(good)) if good.size else 1.0
    missing = ~(np.isfinite(cost) & (cost > 0))
    cost = np.where(missing, [medians[c] for c in classes.tolist()], cost)
    alloc = allocate.allocate(
        np.concatenate([p.lead for p in same]),
        np.concatenate([p.lead_next for p in same]),
        qty,
        cost,
        classes,
        params.service_levels,
        params.fill_floor,
        factors,
        params.backorder_weight,
    )
    for name, lam in alloc.multipliers.items():
        out[name] = {
            "multiplier": lam,
            "planned_fill": alloc.planned_fill[name],
            "target": alloc.aimed[name],
            "calibration": factors.get(name, 1.0),
            "median_cost": medians[name],
        }
    return out


def _explain_change(
    reason: str, old: BinPolicy | None, comp: Computation, before: dict[str, Any]
) -> str:
    """One sentence a line manager can read: what moved the numbers."""
    if comp.result["manual_override"]:
        return "manual min/max override set"
    if old is None:
        return f"first computation ({reason})"
    parts = []
    od, nd = old.inputs.get("demand", {}), comp.inputs["demand"]
    ol, nl = old.inputs.get("lead_time", {}), comp.inputs["lead_time"]

    def pct(a: Any, b: Any) -> float:
        a, b = float(a or 0.0), float(b or 0.0)
        return (b - a) / a * 100 if a else (100.0 if b else 0.0)

    for label, a, b in (
        ("demand rate", od.get("rate_per_day"), nd["rate_per_day"]),
        ("demand σ", od.get("sigma_per_day"), nd["sigma_per_day"]),
        ("lead time", ol.get("mean_days"), nl["mean_days"]),
        ("lead-time σ", ol.get("sigma_days"), nl["sigma_days"]),
    ):
        p = pct(a, b)
        if abs(p) >= 5:
            parts.append(
                f"{label} {float(a or 0):.2f}→{float(b or 0):.2f} ({p:+.0f} %)"
            )
    ot, nt = old.inputs.get("target", {}), comp.inputs["target"]
    if ot.get("service_level") != nt["service_level"]:
        parts.append(f"service level {ot.get('service_level')}→{nt['service_level']}")
    if od.get("class") != nd["class"]:
        parts.append(f"demand class {od.get('class')}→{nd['class']}")
    detail = "; ".join(parts) if parts else "inputs drifted"
    return f"{reason}: {detail}"
