"""Rows the state DB tests need: one site, SKU, supplier and bins."""

from __future__ import annotations

from jitstock.server.db.models import Bin, Site, Sku, Supplier
from jitstock.server.db.session import SessionFactory, transaction

SITE = "plant1"
SKU = "M6-bolt"
SUPPLIER = "acme"


def seed(
    factory: SessionFactory,
    *,
    bins: int = 1,
    on_hand: int = 50,
    reorder_point: int = 20,
    order_qty: int = 100,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    mqtt_orders: bool = False,
    capacity: int | None = None,
) -> list[str]:
    """A site, an SKU, a supplier and ``bins`` bins; returns the bin ids."""
    ids = [f"bin-{i}" for i in range(bins)]
    with transaction(factory) as s:
        s.add(Site(id=SITE, name="Plant 1"))
        s.add(Sku(id=SKU, name="M6 bolt", unit_weight_g=4.2, unit_cost=0.05))
        s.add(
            Supplier(
                id=SUPPLIER,
                name="ACME fasteners",
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                mqtt_orders=mqtt_orders,
            )
        )
        s.flush()
        for bin_id in ids:
            s.add(
                Bin(
                    id=bin_id,
                    site_id=SITE,
                    sku_id=SKU,
                    supplier_id=SUPPLIER,
                    on_hand=on_hand,
                    reorder_point=reorder_point,
                    order_qty=order_qty,
                    capacity=capacity,
                )
            )
    return ids
