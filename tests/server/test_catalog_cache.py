"""The hot path's catalogue cache (jitstock.server.catalog_cache): a change to a
supplier, supplier item, SKU or site counts for the very next claim, however it was
written in this process; a registry reload forgets everything; a read while another
transaction changes the catalogue is not kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from jitstock.server import catalog_cache, reorder_batch
from jitstock.server.db.models import Bin, Order, Site, Sku, Supplier
from jitstock.server.db.session import make_engine, make_session_factory, transaction
from jitstock.server.db.supplier_models import SupplierItem
from jitstock.server.deadletters import is_transient
from jitstock.server.dispatch_claim import claim_new
from jitstock.server.registry import BinRegistry
from tests.server.conftest import _postgres_database
from tests.server.db_factories import SITE, SKU, SUPPLIER, seed

NOW = 1_700_000_000_000


def _claim_one(db, bin_id: str, now: int) -> object:
    """One crossing of bin_id decided and claimed (the job), then its order closed."""
    with transaction(db.factory) as s:
        s.execute(
            update(Bin).where(Bin.id == bin_id).values(on_hand=5, last_seen_ms=now)
        )
        made = reorder_batch.decide(s, [bin_id], now)
        assert len(made) == 1
        (job,) = claim_new(s, [made[0].id], now, 30_000, False)
    with transaction(db.factory) as s:
        s.execute(
            update(Order)
            .where(Order.id == made[0].id)
            .values(state="delivered", delivered_qty=Order.qty)
        )
        s.execute(update(Bin).where(Bin.id == bin_id).values(on_hand=50))
    return job


def test_an_orm_change_to_the_supplier_counts_for_the_next_claim(db):
    (b,) = seed(db.factory, webhook_url="http://a.example/hook", webhook_secret="s1")
    assert _claim_one(db, b, NOW).webhook_url == "http://a.example/hook"
    with transaction(db.factory) as s:
        s.get(Supplier, SUPPLIER).webhook_url = "http://b.example/hook"
    job = _claim_one(db, b, NOW + 1000)
    assert job.webhook_url == "http://b.example/hook"


def test_a_bulk_update_counts_too(db):
    (b,) = seed(db.factory, webhook_url="http://a.example/hook", webhook_secret="s1")
    _claim_one(db, b, NOW)
    with transaction(db.factory) as s:
        s.execute(
            update(Supplier)
            .where(Supplier.id == SUPPLIER)
            .values(webhook_secret="s2", webhook_secret_previous="s1")
        )
    job = _claim_one(db, b, NOW + 1000)
    assert (job.webhook_secret, job.previous_secret) == ("s2", "s1")


def test_a_sku_rename_changes_the_next_body(db):
    (b,) = seed(db.factory, webhook_url="http://a.example/hook", webhook_secret="s1")
    assert b'"description":"M6 bolt"' in _claim_one(db, b, NOW).body
    with db.engine.begin() as conn:  # a Core write on a plain connection
        conn.execute(update(Sku).where(Sku.id == SKU).values(name="M6 bolt, zinc"))
    assert b'"description":"M6 bolt, zinc"' in _claim_one(db, b, NOW + 1000).body


def test_sql_text_writes_wait_for_the_registry_reload(db):
    """What the cache cannot see (SQL text, another process) ends with the next reload."""
    (b,) = seed(db.factory, webhook_url="http://a.example/hook", webhook_secret="s1")
    _claim_one(db, b, NOW)
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE sites SET name = 'Plant one' WHERE id = :s"), {"s": SITE}
        )
    assert b'"name":"Plant 1"' in _claim_one(db, b, NOW + 1000).body
    registry = BinRegistry(lambda: ([], {}, {}, {}))
    registry.reload()
    assert b'"name":"Plant one"' in _claim_one(db, b, NOW + 2000).body


def test_a_read_during_a_change_is_not_kept(db):
    seed(db.factory)
    with transaction(db.factory) as writer:
        writer.get(Site, SITE).name = "Plant X"
        writer.flush()  # the write is issued, not committed: the generation ends now
        gen = catalog_cache.generation()
        with transaction(db.factory, readonly=True) as reader:
            # another connection reads the committed row (Plant 1)
            seen = catalog_cache.sites(reader.connection(), [SITE])[SITE]
    assert catalog_cache.generation() > gen  # ended again by the commit
    with transaction(db.factory, readonly=True) as reader:
        assert catalog_cache.sites(reader.connection(), [SITE])[SITE].name == "Plant X"
    assert seen is not None
    assert seen.name == "Plant 1"


def test_missing_rows_are_none_and_inactive_items_are_not_candidates(db):
    seed(db.factory)
    with transaction(db.factory) as s:
        s.add(SupplierItem(supplier_id=SUPPLIER, sku_id=SKU, priority=1, active=False))
    with transaction(db.factory, readonly=True) as r:
        conn = r.connection()
        assert catalog_cache.suppliers(conn, ["nobody"]) == {"nobody": None}
        assert catalog_cache.sku_names(conn, ["", "x" * 5000]) == {
            "": None,
            "x" * 5000: None,
        }
        assert catalog_cache.active_suppliers(conn, [SKU]) == {SKU: []}
    with transaction(db.factory) as s:
        s.execute(update(SupplierItem).values(active=True))
    with transaction(db.factory, readonly=True) as r:
        conn = r.connection()
        assert catalog_cache.active_suppliers(conn, [SKU]) == {SKU: [SUPPLIER]}
        assert catalog_cache.items(conn, [(SUPPLIER, SKU)])[(SUPPLIER, SKU)] is not None
        names = conn.execute(select(Sku.name)).scalars().all()
    assert names == ["M6 bolt"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _postgres_database()


def test_a_connection_lost_mid_transaction_stays_a_transient_error(pg_url: str) -> None:
    """A PostgreSQL backend gone mid-transaction (a restart, a failover) must surface as
    the driver's OperationalError, which ingest retries, not as PendingRollbackError
    from this module's rollback listener, which ingest would dead-letter."""
    engine = make_engine(pg_url)
    killer = make_engine(pg_url)

    def lose_the_backend_mid_transaction() -> None:
        with transaction(make_session_factory(engine)) as s:
            pid = s.execute(text("SELECT pg_backend_pid()")).scalar()
            with killer.begin() as k:
                k.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            s.execute(text("SELECT 1"))

    try:
        with pytest.raises(Exception) as raised:  # noqa: PT011 - the type is the point
            lose_the_backend_mid_transaction()
        assert isinstance(raised.value, OperationalError), repr(raised.value)
        assert is_transient(raised.value)
        with transaction(make_session_factory(engine)) as s:  # and the pool recovers
            assert s.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
        killer.dispose()
