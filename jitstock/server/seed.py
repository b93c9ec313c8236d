"""Create a plant's master data in one go: used by the demo, the benchmarks and the tests.

Plants keep this in spreadsheets and load it through the CSV import API; code
that needs a plant without HTTP (demo, benchmark set-up) uses this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from jitstock.server.db.models import Agent, Bin, Site, Sku, Supplier
from jitstock.server.db.session import SessionFactory, transaction


@dataclass(slots=True, frozen=True)
class BinSeed:
    id: str
    agent: str
    sku: str
    unit_weight_g: float
    tare_g: float
    reorder_point: int
    order_qty: int
    capacity: int
    supplier: str | None
    channel: str | None = None
    area: str | None = None
    line: str | None = None
    # the supplier's quoted lead time for this bin (None: the server's default)
    lead_time_s: int | None = None
    # the SKU's unit cost (ABC classes rank consumption by value)
    unit_cost: float | None = None
    # replenishment policy ("s,Q", "s,S", "R,S") and the review period of "R,S"
    policy: str | None = None
    review_period_days: float | None = None


@dataclass(slots=True, frozen=True)
class SupplierSeed:
    id: str
    name: str
    webhook_url: str | None
    webhook_secret: str | None
    mqtt_orders: bool = False


def seed_plant(
    session_factory: SessionFactory,
    site: str,
    bins: Iterable[BinSeed],
    suppliers: Iterable[SupplierSeed] = (),
    site_name: str | None = None,
) -> None:
    """Insert (or leave alone, if present) a site, its suppliers, agents, SKUs and bins."""
    bins = list(bins)
    with transaction(session_factory) as s:
        if s.get(Site, site) is None:
            s.add(Site(id=site, name=site_name or site))
        for sup in suppliers:
            if s.get(Supplier, sup.id) is None:
                s.add(
                    Supplier(
                        id=sup.id,
                        name=sup.name,
                        webhook_url=sup.webhook_url,
                        webhook_secret=sup.webhook_secret,
                        mqtt_orders=sup.mqtt_orders,
                    )
                )
        s.flush()
        known_agents = set(s.scalars(select(Agent.id)))
        known_skus = set(s.scalars(select(Sku.id)))
        known_bins = set(s.scalars(select(Bin.id)))
        for b in bins:
            if b.agent not in known_agents:
                s.add(Agent(id=b.agent, site_id=site))
                known_agents.add(b.agent)
            if b.sku not in known_skus:
                s.add(
                    Sku(
                        id=b.sku,
                        name=b.sku,
                        unit_weight_g=b.unit_weight_g,
                        unit_cost=b.unit_cost,
                    )
                )
                known_skus.add(b.sku)
        s.flush()
        for b in bins:
            if b.id in known_bins:
                continue
            s.add(
                Bin(
                    id=b.id,
                    site_id=site,
                    agent_id=b.agent,
                    channel=b.channel,
                    area=b.area,
                    line=b.line,
                    sku_id=b.sku,
                    supplier_id=b.supplier,
                    tare_g=b.tare_g,
                    unit_weight_g=b.unit_weight_g,
                    capacity=b.capacity,
                    reorder_point=b.reorder_point,
                    order_qty=b.order_qty,
                    lead_time_s=b.lead_time_s,
                    policy=b.policy,
                    review_period_days=b.review_period_days,
                )
            )
