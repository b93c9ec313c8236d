"""On time has one definition: the KPI page and the supplier scorecard judge the same orders alike."""

from __future__ import annotations

from typing import Any

from jitstock.server.db.models import Order
from jitstock.server.db.session import transaction
from jitstock.server.kpis import compute
from jitstock.server.on_time import (
    ON_TIME_TOLERANCE_FRACTION,
    ON_TIME_TOLERANCE_MS,
    is_on_time,
    tolerance_ms,
)
from jitstock.server.seed import BinSeed, SupplierSeed, seed_plant
from jitstock.server.supplier.scorecard import scorecard

NOW = 1_800_000_000_000
HOUR = 3_600_000


def test_tolerance_is_minutes_capped_by_a_tenth_of_the_lead_time() -> None:
    assert tolerance_ms(NOW + 4 * HOUR, NOW) == ON_TIME_TOLERANCE_MS
    assert tolerance_ms(NOW + 25_000, NOW) == int(ON_TIME_TOLERANCE_FRACTION * 25_000)
    assert tolerance_ms(NOW, None) == ON_TIME_TOLERANCE_MS
    assert tolerance_ms(NOW, NOW + 1) == 0
    due = NOW + 4 * HOUR
    assert is_on_time(due, due, NOW)
    assert is_on_time(due + ON_TIME_TOLERANCE_MS, due, NOW)
    assert not is_on_time(due + ON_TIME_TOLERANCE_MS + 1, due, NOW)
    # a 25 s promise has 2.5 s of slack, not five minutes
    assert is_on_time(NOW + 27_000, NOW + 25_000, NOW)
    assert not is_on_time(NOW + 28_000, NOW + 25_000, NOW)


def _order(n: int, late_ms: int) -> Order:
    promised = NOW + 4 * HOUR
    return Order(
        id=f"o{n}",
        bin_id="B1",
        sku_id="SKU-1",
        supplier_id="acme",
        site_id="plant1",
        qty=10,
        state="received",
        created_ms=NOW,
        sent_ms=NOW,
        acked_ms=NOW + 1000,
        promised_ms=promised,
        delivered_ms=promised + late_ms,
        delivered_qty=10,
        trigger={},
    )


def test_kpis_and_scorecard_agree_on_time(db: Any) -> None:
    seed_plant(
        db.factory,
        "plant1",
        [BinSeed("B1", "pi-1", "SKU-1", 10.0, 0.0, 5, 10, 40, "acme")],
        [SupplierSeed("acme", "ACME", None, None)],
    )
    # before the promise, at it, within the tolerance, and late
    lateness = [-60_000, 0, ON_TIME_TOLERANCE_MS - 1000, ON_TIME_TOLERANCE_MS + 1000]
    with transaction(db.factory) as s:
        s.add_all([_order(n, late) for n, late in enumerate(lateness)])
    with transaction(db.factory, readonly=True) as s:
        kpi = compute(s, NOW, NOW + 24 * HOUR)
        card = scorecard(s, "acme", NOW, NOW + 24 * HOUR)
    (row,) = kpi["suppliers"]
    assert row["on_time_rate"] == 0.75
    assert card.on_time_rate == 0.75
