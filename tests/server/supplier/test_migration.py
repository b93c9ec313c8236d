"""0002_supplier_loop builds what the models say, and "one open order per bin" covers the
new open states up to shipped but not a bridging order; since 0017_part_received not a
part-received order either (the bin may order again beside it), but then one more only."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from jitstock.server.db.models import Base, Order
from jitstock.server.db.session import transaction
from tests.server.db_factories import SITE, SKU, SUPPLIER, seed


def _order(bin_id: str, state: str, oid: str, bridge_for: str | None = None) -> Order:
    return Order(
        id=oid,
        bin_id=bin_id,
        sku_id=SKU,
        supplier_id=SUPPLIER,
        site_id=SITE,
        qty=10,
        state=state,
        created_ms=1,
        trigger={},
        bridge_for=bridge_for,
    )


def test_schema_matches_the_models(db):
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


@pytest.mark.parametrize("open_state", ["created", "sent", "acknowledged", "shipped"])
def test_new_open_states_block_a_second_order(db, open_state):
    (bin_id,) = seed(db.factory)
    with transaction(db.factory) as s:
        s.add(_order(bin_id, open_state, "o1"))
    with pytest.raises(IntegrityError), transaction(db.factory) as s:
        s.add(_order(bin_id, "created", "o2"))


def test_a_part_received_order_allows_one_new_order_beside_it(db):
    (bin_id,) = seed(db.factory)
    with transaction(db.factory) as s:
        s.add(_order(bin_id, "part_received", "p"))
        s.add(_order(bin_id, "created", "o1"))
    with pytest.raises(IntegrityError), transaction(db.factory) as s:
        s.add(_order(bin_id, "sent", "o2"))


def test_received_closed_and_bridges_do_not_block(db):
    (bin_id,) = seed(db.factory)
    with transaction(db.factory) as s:
        s.add(_order(bin_id, "received", "r"))
        s.add(_order(bin_id, "closed", "c"))
        s.add(_order(bin_id, "acknowledged", "open"))
        s.add(_order(bin_id, "created", "bridge", bridge_for="open"))
