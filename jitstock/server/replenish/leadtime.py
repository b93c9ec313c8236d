"""Lead time per supplier item from real orders: mean, spread and on-time rate, with the quote as prior.

The quoted lead time enters as ``PRIOR_DELIVERIES`` pseudo-deliveries (mean =
the quote, spread = ``PRIOR_CV`` × the quote) older than every real one, so a
new supplier item starts at its quote and real deliveries take over as they
come.  Deliveries are
weighted by recency (half-life ``HALF_LIFE_DELIVERIES``): a supplier who
starts delivering late moves the estimate within a few deliveries, and the
mixture of old and new lead times widens σ_L meanwhile — both raise the
reorder point.

Arrays have one row per supplier item and deliveries in chronological order
along axis 1, NaN-padded (the benchmark estimates a thousand items at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jitstock.server.db.models import Base, Order
from jitstock.server.on_time import is_on_time

FloatArray = npt.NDArray[np.float64]

DAY_S = 86_400.0
# Weight of the quoted lead time, in deliveries: after a handful of real ones the data dominates.
PRIOR_DELIVERIES = 3.0
# Assumed spread of a quote before any delivery: suppliers quote a typical, not a worst case.
PRIOR_CV = 0.25
# Recent deliveries count more: a supplier's behaviour changes (new carrier, capacity trouble).
HALF_LIFE_DELIVERIES = 6.0
# Fewer real deliveries than this: report the estimate as still quote-based.
MIN_DELIVERIES = 3
# Deliveries read per supplier item (older ones weigh < 1 % at the half-life above).
MAX_DELIVERIES = 50
# Order states in which goods have arrived (issue 5 adds received/closed).
ARRIVED_STATES = ("delivered", "part_received", "received", "closed")


@dataclass(slots=True, frozen=True)
class LeadTime:
    """Lead-time estimate per row, in days."""

    mean: FloatArray
    sigma: FloatArray
    deliveries: npt.NDArray[np.int64]
    weight: FloatArray  # total recency weight of real deliveries


def estimate(
    samples_days: FloatArray,
    quoted_days: FloatArray,
    prior_cv: float = PRIOR_CV,
    prior_n: float = PRIOR_DELIVERIES,
    half_life: float = HALF_LIFE_DELIVERIES,
) -> LeadTime:
    """Recency-weighted mean and σ of lead times, shrunk towards the quote."""
    x = np.atleast_2d(np.asarray(samples_days, dtype=np.float64))
    n, k = x.shape
    q = np.broadcast_to(np.asarray(quoted_days, dtype=np.float64), (n,))
    have = ~np.isnan(x)
    # age 0 for the newest delivery of each row
    order = np.cumsum(have[:, ::-1], axis=1)[:, ::-1]
    age = np.where(have, order - 1, 0)
    w = np.where(have, 0.5 ** (age / half_life), 0.0)
    xs = np.where(have, x, 0.0)
    sw = w.sum(axis=1)
    count = have.sum(axis=1)
    # the quote is older than every delivery: it ages like one, so the data takes over
    prior_n = prior_n * 0.5 ** (count / half_life)
    mean = (prior_n * q + (w * xs).sum(axis=1)) / (prior_n + sw)
    s0 = prior_cv * q
    dev = (w * (xs - mean[:, None]) ** 2).sum(axis=1)
    var = (prior_n * (s0**2 + (q - mean) ** 2) + dev) / (prior_n + sw)
    return LeadTime(mean, np.sqrt(var), count.astype(np.int64), sw)


@dataclass(slots=True, frozen=True)
class Deliveries:
    """One supplier item's arrived orders, oldest first."""

    sent_to_delivered_days: FloatArray
    acked_to_delivered_days: FloatArray
    on_time: npt.NDArray[np.bool_]

    @property
    def count(self) -> int:
        """How many deliveries."""
        return int(self.sent_to_delivered_days.size)

    def on_time_rate(self) -> float | None:
        """Share delivered by the promise (None without deliveries)."""
        return float(self.on_time.mean()) if self.on_time.size else None


def _arrival_ms(session: Session) -> Any:
    """When an order's goods arrived: /deliver's time, else its first receipt, else its closing."""
    receipts = Base.metadata.tables.get("receipts")
    parts: list[Any] = [Order.delivered_ms]
    if receipts is not None:
        parts.append(
            select(func.min(receipts.c.at_ms))
            .where(receipts.c.order_id == Order.id)
            .scalar_subquery()
        )
    closed = getattr(Order, "closed_ms", None)
    if closed is not None:
        parts.append(closed)
    return func.coalesce(*parts) if len(parts) > 1 else parts[0]


def load_deliveries(
    session: Session,
    supplier_id: str,
    sku_id: str,
    quoted_s: float,
    limit: int = MAX_DELIVERIES,
) -> Deliveries:
    """The last ``limit`` arrived orders of a supplier item (supplier × SKU), oldest first."""
    arrived = _arrival_ms(session).label("arrived_ms")
    rows = session.execute(
        select(
            Order.created_ms, Order.sent_ms, Order.acked_ms, Order.promised_ms, arrived
        )
        .where(
            Order.supplier_id == supplier_id,
            Order.sku_id == sku_id,
            Order.state.in_(ARRIVED_STATES),
        )
        .order_by(Order.created_ms.desc())
        .limit(limit)
    ).all()
    sent_d: list[float] = []
    ack_d: list[float] = []
    on_time: list[bool] = []
    for created, sent, acked, promised, done in reversed(rows):
        if done is None:
            continue
        start = sent if sent is not None else created
        sent_d.append((done - start) / 1000 / DAY_S)
        ack_d.append((done - acked) / 1000 / DAY_S if acked is not None else np.nan)
        due = promised if promised is not None else start + quoted_s * 1000
        on_time.append(is_on_time(done, due, start))
    return Deliveries(
        np.asarray(sent_d, dtype=np.float64),
        np.asarray(ack_d, dtype=np.float64),
        np.asarray(on_time, dtype=np.bool_),
    )
