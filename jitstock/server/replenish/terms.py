"""What the supplier sells a bin's SKU by: pack size, minimum order quantity, quoted lead time.

From the supplier's item (``supplier_items``, issue 5) when that table exists
and has a row for the bin's supplier and SKU; otherwise from the bin's own
columns, then defaults.  The table is read through the shared metadata, so
this module works before and after the supplier loop lands.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.db.models import Base, Bin

# Without a quote anywhere: a few days is what a regional parts supplier typically needs.
DEFAULT_LEAD_TIME_S = 3 * 86_400.0


@dataclass(slots=True, frozen=True)
class SupplierTerms:
    """Order constraints and the quoted lead time for one bin."""

    pack_size: int
    moq: int
    quoted_lead_time_s: float
    unit_price: float | None
    source: str  # "supplier_item" or "bin"


def supplier_terms(
    session: Session, bin: Bin, default_lead_time_s: float = DEFAULT_LEAD_TIME_S
) -> SupplierTerms:
    """The bin's supplier item terms, falling back to the bin's own values and defaults."""
    pack = bin.pack_size or 1
    moq = bin.moq or 0
    lead = float(bin.lead_time_s) if bin.lead_time_s else default_lead_time_s
    price = bin.sku.unit_cost if bin.sku is not None else None
    table = Base.metadata.tables.get("supplier_items")
    if table is not None and bin.supplier_id is not None:
        row = (
            session.execute(
                select(table).where(
                    table.c.supplier_id == bin.supplier_id,
                    table.c.sku_id == bin.sku_id,
                )
            )
            .mappings()
            .first()
        )
        if row is not None:
            return SupplierTerms(
                pack_size=int(row.get("pack_size") or pack),
                moq=int(row.get("moq") or moq),
                quoted_lead_time_s=float(row.get("quoted_lead_time_s") or lead),
                unit_price=row.get("price") if row.get("price") is not None else price,
                source="supplier_item",
            )
    return SupplierTerms(max(1, pack), max(0, moq), lead, price, "bin")
