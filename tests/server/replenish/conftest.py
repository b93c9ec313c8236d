"""Replenishment fixtures: a clock the test moves, and the state-DB rows the tests learn from."""

from __future__ import annotations

import numpy as np

from jitstock.server.db.models import BinEvent, Order
from jitstock.server.db.session import SessionFactory, transaction
from jitstock.server.replenish.demand import DAY_MS
from tests.server.db_factories import SKU, SUPPLIER


class ManualClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, start_ms: int) -> None:
        self.now_ms = start_ms

    def monotonic(self) -> float:
        return self.now_ms / 1000

    def time_ms(self) -> int:
        return self.now_ms

    def sleep(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


def add_picks(
    factory: SessionFactory,
    bin_id: str,
    start_ms: int,
    days: int,
    per_day: float,
    seed: int,
) -> None:
    """Consumption events: a Poisson number of units per day, in picks of up to 5."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(days):
        units = int(rng.poisson(per_day))
        t = start_ms + day * DAY_MS + 6 * 3_600_000
        while units > 0:
            take = min(5, units)
            rows.append(
                BinEvent(
                    bin_id=bin_id,
                    ts_ms=t,
                    kind="consumption",
                    delta=-take,
                    on_hand_after=1000,
                )
            )
            units -= take
            t += 60_000
    with transaction(factory) as s:
        s.add_all(rows)


def add_deliveries(
    factory: SessionFactory,
    bin_id: str,
    first_ms: int,
    n: int,
    lead_days: float,
    sku: str = SKU,
    supplier: str = SUPPLIER,
) -> None:
    """Delivered orders that arrived ``lead_days`` after they were sent, one every 5 days."""
    with transaction(factory) as s:
        for k in range(n):
            sent = first_ms + k * 5 * DAY_MS
            s.add(
                Order(
                    bin_id=bin_id,
                    sku_id=sku,
                    supplier_id=supplier,
                    site_id="plant1",
                    qty=100,
                    state="delivered",
                    created_ms=sent,
                    sent_ms=sent,
                    delivered_ms=sent + int(lead_days * DAY_MS),
                    delivered_qty=100,
                    trigger={},
                )
            )


# The API tests' real-HTTP fixtures (uvicorn on a free port over a temp state DB).
from tests.server.api.conftest import admin, api, make_api, manager, viewer  # noqa: E402, F401
