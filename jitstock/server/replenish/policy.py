"""Safety stock, reorder point, order quantity, kanban cards: the policy maths, vectorised.

- SS = z · √(H·σ_d² + d²·σ_L²) over the protection horizon H (L for
  continuous review, L + R for periodic review), ROP = d·H + SS (+ the
  undershoot on the normal curve, below).
- (s,Q), the default: order Q when the position reaches s.
- (s,S): order up to S = s + Q (live: the reorder rule orders Q = S − s).
- (R,S): every R days order up to S = d·(L+R) + SS(L+R).  Live, the
  continuous reorder rule fires at s = S − d·R (where a review would find the
  position) for Q = d·R.
- With lead-time demand draws (ltd.draws: demand over L and over L + 1
  days) and a fill-rate target, s is the level solved on the draws
  (expected shortage per day ≤ (1 − β) of a day's demand, ltd.daily_shortage),
  raised by how much the forecast d·H exceeds the draws' mean (demand grown
  past the history), never lowered; SS = s − d·H and z is reported as
  SS/σ_LT.  No undershoot is added there: the live rule and the benchmark
  order whole Qs until the position is above s, so the position after an
  order is uniform on (s, s + Q] whatever the picks' sizes.
- z: for a fill-rate target β (the default: units served from stock, what
  the line feels) the z whose expected shortage per order cycle,
  σ_LT·G(z), equals (1 − β)·Q (G: the standard normal loss function), never
  below 0; for a cycle-service target, z = Φ⁻¹(target).
- Q = d × order cycle (or EOQ when ordering and holding costs are known),
  raised to the MOQ and rounded up to whole packs.
- A manual min/max wins: s = min, Q = max − min; flagged as an override.
  The fill-rate z is solved for the quantity actually ordered (with only a
  manual max, Q = max − s depends on s: a few fixed-point steps, s capped
  at max − 1), never for the week of demand the override replaced.
- Undershoot (normal curve only): the reorder point adds the expected
  undershoot E[X²]/2E[X] of the crossing pick (demand.undershoot) on top of
  SS and reports it as its own number; solved on draws it is 0.
- Fade: a dormant part (demand.dormancy_fade) has its whole reorder point
  scaled towards 0 — nobody restocks a part nobody uses.
- Kanban cards N = ⌈D·L·(1+α)/C⌉ with C the container one card orders (the
  order quantity, not the supplier's pack), at least two (one container in
  use while the other is on order).

Everything takes scalars or arrays with one entry per bin (numpy broadcasting),
so the server (one bin) and the benchmark (every SKU) share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from jitstock.server.replenish import ltd

FloatArray = npt.NDArray[np.float64]
ArrayLike = float | FloatArray

# The largest order, learnt or placed: what one ship notice or dock receipt can carry
# (the API's largest quantity, MAX_QTY, is this; the reorder rule's multiples keep
# within it too).
MAX_ORDER_QTY = 1_000_000
POLICIES = ("s,Q", "s,S", "R,S")
SQ, SS_, RS = range(3)
DEFAULT_POLICY = "s,Q"
# Days of demand one order covers when no EOQ costs are known: weekly deliveries are the JIT norm.
DEFAULT_ORDER_CYCLE_DAYS = 7.0
# Kanban safety factor α when the plant sets none.
DEFAULT_KANBAN_ALPHA = 0.1
# Two-bin minimum: one container is used while the other is being refilled.
MIN_KANBAN_CARDS = 2.0
# Fixed-point steps for z when a manual max makes Q depend on the reorder point.
OVERRIDE_Z_STEPS = 8
# Service levels are clipped to this range: z(1.0) is infinite, z(0.5) = 0 is no safety stock.
SERVICE_LEVEL_RANGE = (0.5, 0.9999)

_NORMAL = NormalDist()
# z grid for inverting the normal loss function G(z) = φ(z) − z·(1 − Φ(z)) by interpolation.
_Z_GRID = np.linspace(0.0, 5.0, 5001)
_LOSS = np.asarray(
    [_NORMAL.pdf(z) - z * (1 - _NORMAL.cdf(z)) for z in _Z_GRID], dtype=np.float64
)


def _f(x: object) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def z_for(service_level: ArrayLike) -> FloatArray:
    """Standard normal quantile for a cycle service level (clipped to SERVICE_LEVEL_RANGE)."""
    p = np.clip(np.asarray(service_level, dtype=np.float64), *SERVICE_LEVEL_RANGE)
    return _f(np.vectorize(_NORMAL.inv_cdf, otypes=[np.float64])(p))


def normal_loss(z: ArrayLike) -> FloatArray:
    """G(z) = φ(z) − z·(1 − Φ(z)): expected units short per σ of lead-time demand."""
    zz = np.asarray(z, dtype=np.float64)
    return _f(np.interp(zz, _Z_GRID, _LOSS))


def z_for_fill_rate(
    fill_rate: ArrayLike, sigma_lt: ArrayLike, qty: ArrayLike
) -> FloatArray:
    """z with σ_LT·G(z) = (1 − β)·Q, at least 0 (0 where there is no uncertainty)."""
    beta = np.clip(np.asarray(fill_rate, dtype=np.float64), *SERVICE_LEVEL_RANGE)
    sig = np.asarray(sigma_lt, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        target = np.where(sig > 0, (1 - beta) * np.asarray(qty) / sig, np.inf)
    # G falls from 0.399 at z=0 towards 0: interpolate on the reversed (rising) table
    z = np.interp(target, _LOSS[::-1], _Z_GRID[::-1])
    return _f(np.where(sig > 0, z, 0.0))


def safety_stock(
    z: ArrayLike, d: ArrayLike, lead: ArrayLike, sigma_d: ArrayLike, sigma_l: ArrayLike
) -> FloatArray:
    """SS = z · √(L·σ_d² + d²·σ_L²) (d, σ_d per day; L, σ_L in days)."""
    d = np.asarray(d, dtype=np.float64)
    return _f(
        np.asarray(z)
        * np.sqrt(
            np.asarray(lead) * np.asarray(sigma_d) ** 2
            + d**2 * np.asarray(sigma_l) ** 2
        )
    )


def reorder_point(d: ArrayLike, lead: ArrayLike, ss: ArrayLike) -> FloatArray:
    """ROP = d·L + SS."""
    return _f(np.asarray(d, dtype=np.float64) * np.asarray(lead) + np.asarray(ss))


def round_order_qty(qty: ArrayLike, pack: ArrayLike, moq: ArrayLike) -> FloatArray:
    """At least one unit and the MOQ, rounded up to whole packs; at most the whole packs
    within MAX_ORDER_QTY (an order bigger than that could not be shipped or received in
    one request of the API)."""
    q = np.maximum(np.maximum(np.asarray(qty, dtype=np.float64), 1.0), np.asarray(moq))
    p = np.maximum(np.asarray(pack, dtype=np.float64), 1.0)
    most = np.maximum(np.floor(MAX_ORDER_QTY / p) * p, 1.0)
    return _f(np.minimum(np.ceil(q / p - 1e-9) * p, most))


def eoq(
    annual_demand: ArrayLike, order_cost: ArrayLike, holding_cost: ArrayLike
) -> FloatArray:
    """Economic order quantity √(2·D·K/h) (NaN where h ≤ 0)."""
    h = np.asarray(holding_cost, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _f(
            np.where(
                h > 0,
                np.sqrt(2 * np.asarray(annual_demand) * np.asarray(order_cost) / h),
                np.nan,
            )
        )


def kanban_cards(
    daily_demand: ArrayLike,
    lead_days: ArrayLike,
    container: ArrayLike,
    alpha: ArrayLike = DEFAULT_KANBAN_ALPHA,
) -> FloatArray:
    """N = ⌈D·L·(1+α)/C⌉ for containers of C units, at least MIN_KANBAN_CARDS."""
    c = np.maximum(np.asarray(container, dtype=np.float64), 1.0)
    n = np.asarray(daily_demand) * np.asarray(lead_days) * (1 + np.asarray(alpha)) / c
    return _f(np.maximum(np.ceil(n - 1e-9), MIN_KANBAN_CARDS))


@dataclass(slots=True, frozen=True)
class PolicyInputs:
    """What a policy is computed from (arrays or scalars, one entry per bin)."""

    demand: ArrayLike  # d, units per day
    sigma_d: ArrayLike  # σ of daily demand
    lead: ArrayLike  # L, days
    sigma_l: ArrayLike  # σ_L, days
    service_level: ArrayLike
    pack: ArrayLike = 1.0
    moq: ArrayLike = 0.0
    policy: ArrayLike = float(SQ)  # code into POLICIES
    review_days: ArrayLike = 0.0  # R, for (R,S)
    order_cycle_days: ArrayLike = DEFAULT_ORDER_CYCLE_DAYS
    order_cost: ArrayLike = np.nan  # K per order, for EOQ
    holding_cost: ArrayLike = np.nan  # h per unit and year, for EOQ
    manual_min: ArrayLike = np.nan
    manual_max: ArrayLike = np.nan
    kanban_alpha: ArrayLike = DEFAULT_KANBAN_ALPHA
    # expected undershoot below the trigger (demand.undershoot), added on the normal curve only
    undershoot: ArrayLike = 0.0
    # 1 = active; towards 0 the part is dormant and its reorder point fades (demand.dormancy_fade)
    fade: ArrayLike = 1.0
    # True: service_level is a fill-rate target; False: a cycle service level
    fill_rate: bool | npt.NDArray[np.bool_] = True
    # (n, draws) draws of demand over the lead time and over one day more (ltd.draws): with
    # a fill-rate target the reorder point is solved on them instead of the normal curve
    ltd_samples: tuple[FloatArray, FloatArray] | None = None


@dataclass(slots=True, frozen=True)
class Policy:
    """The computed policy per bin; ``reorder_at``/``order_qty`` are what the live rule uses."""

    z: FloatArray
    safety_stock: FloatArray
    reorder_point: FloatArray  # (d·H + SS + undershoot) · fade, unrounded
    undershoot: FloatArray  # the undershoot term inside reorder_point (after fade)
    order_up_to: FloatArray  # S (s + Q for (s,Q) and (s,S))
    order_qty: FloatArray  # rounded to packs / MOQ
    reorder_at: FloatArray  # integer trigger level for the live reorder rule
    kanban_cards: FloatArray
    override: npt.NDArray[np.bool_]


def compute(x: PolicyInputs) -> Policy:
    """Safety stock, reorder point and order quantity for every bin in ``x``."""
    d = np.maximum(np.asarray(x.demand, dtype=np.float64), 0.0)
    kind = np.asarray(x.policy, dtype=np.float64)
    periodic = kind == RS
    review = np.where(periodic, np.asarray(x.review_days, dtype=np.float64), 0.0)
    horizon = np.asarray(x.lead, dtype=np.float64) + review
    cycle = np.where(periodic & (review > 0), review, x.order_cycle_days)
    base_q = d * cycle
    with np.errstate(invalid="ignore"):
        e = eoq(365.0 * d, x.order_cost, x.holding_cost)
    base_q = np.where(np.isfinite(e) & ~periodic, e, base_q)
    q = round_order_qty(base_q, x.pack, x.moq)
    sigma_lt = safety_stock(1.0, d, horizon, x.sigma_d, x.sigma_l)
    fade = np.clip(np.asarray(x.fade, dtype=np.float64), 0.0, 1.0)
    fill = np.asarray(x.fill_rate)
    # solved on draws: the order lifts the position above s, so no undershoot below it
    # is left to cover (ltd.daily_shortage); the undershoot stays for the normal curve
    on_draws = (x.ltd_samples is not None) & fill & ~periodic
    under = np.where(on_draws, 0.0, np.asarray(x.undershoot, np.float64) * fade)
    lo = np.asarray(x.manual_min, dtype=np.float64)
    hi = np.asarray(x.manual_max, dtype=np.float64)
    override = ~np.isnan(lo) | ~np.isnan(hi)

    def solve(qty: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        z = np.where(
            fill,
            z_for_fill_rate(x.service_level, sigma_lt, qty),
            z_for(x.service_level),
        )
        ss = z * sigma_lt
        if x.ltd_samples is not None:
            beta = np.clip(
                np.asarray(x.service_level, np.float64), *SERVICE_LEVEL_RANGE
            )
            lead_x, next_x = x.ltd_samples
            level = ltd.fill_rate_level(lead_x, next_x, beta, qty)
            mean_x = np.atleast_2d(lead_x).mean(axis=1)
            # the draws' level, raised where the forecast says demand grew past the
            # history (never lowered: a lumpy forecast's dip is noise, a dying part fades)
            rise = np.maximum(d * horizon - mean_x, 0.0)
            emp_ss = level + rise - d * horizon
            use = on_draws
            ss = np.where(use, emp_ss, ss)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(use, np.where(sigma_lt > 0, ss / sigma_lt, 0.0), z)
        ss = ss * fade
        rop = reorder_point(d * fade, horizon, ss) + under
        return _f(z), _f(ss), _f(rop)

    def trigger(rop: FloatArray) -> FloatArray:
        s = np.where(periodic, rop - d * review, rop)
        # a manual max caps the trigger one unit below it: too tight a max for the
        # target ends as base stock at the max, never as a trigger above it
        s = np.where(np.isnan(hi), s, np.minimum(s, hi - 1.0))
        return _f(np.where(np.isnan(lo), s, lo))

    z, ss, rop = solve(q)
    # the quantity a manual max really orders decides how much the order itself covers
    for _ in range(OVERRIDE_Z_STEPS if bool(np.any(~np.isnan(hi))) else 0):
        eff_q = np.where(np.isnan(hi), q, np.maximum(hi - trigger(rop), 1.0))
        z, ss, rop = solve(_f(eff_q))
    s_trigger = trigger(rop)
    up_to = np.where(periodic, rop, rop + q)
    manual_q = np.where(np.isnan(hi), q, np.maximum(hi - s_trigger, 1.0))
    q = np.minimum(np.where(override, manual_q, q), MAX_ORDER_QTY)
    up_to = np.where(np.isnan(hi), up_to, hi)
    cards = kanban_cards(d, x.lead, np.maximum(q, np.asarray(x.pack)), x.kanban_alpha)
    return Policy(
        z=np.asarray(z, dtype=np.float64),
        safety_stock=ss,
        reorder_point=rop,
        undershoot=_f(np.broadcast_to(under, np.shape(rop))),
        order_up_to=np.asarray(up_to, dtype=np.float64),
        order_qty=np.asarray(q, dtype=np.float64),
        reorder_at=np.ceil(np.asarray(s_trigger) - 1e-9),
        kanban_cards=cards,
        override=np.asarray(override, dtype=np.bool_),
    )
