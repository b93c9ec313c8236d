"""The packaged migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from jitstock.server.db.migrate import (
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from jitstock.server.db.models import Base, Bin, Order, Site
from jitstock.server.db.session import make_engine, make_session_factory, transaction
from tests.server.db_factories import SITE, SKU, SUPPLIER, seed

TABLES = {
    "sites",
    "skus",
    "suppliers",
    "agents",
    "agent_cursors",
    "bins",
    "bin_events",
    "orders",
    "order_attempts",
    "api_keys",
    "audit_log",
}


def test_upgrade_builds_exactly_the_models_schema(db_url):
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == head_revision() == "0021_order_replaces"
    engine = make_engine(db_url)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op_and_downgrade_round_trips(db_url):
    upgrade(db_url)
    upgrade(db_url)
    downgrade(db_url, "base")
    assert current_revision(db_url) is None
    engine = make_engine(db_url)
    try:
        assert not TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    upgrade(db_url)
    assert current_revision(db_url) == "0021_order_replaces"


def test_foreign_keys_are_enforced(db):
    with pytest.raises(IntegrityError), transaction(db.factory) as s:
        s.add(Bin(id="orphan", site_id="nowhere", sku_id="nothing"))


def test_failed_transaction_leaves_nothing_behind(db):
    def write_then_crash() -> None:
        with transaction(db.factory) as s:
            s.add(Site(id="half", name="half-written"))
            s.flush()
            raise RuntimeError("crash mid-transaction")

    with pytest.raises(RuntimeError):
        write_then_crash()
    with transaction(db.factory, readonly=True) as s:
        assert s.get(Site, "half") is None


def _order(bin_id: str, state: str, oid: str) -> Order:
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
    )


@pytest.mark.parametrize("open_state", ["created", "sent", "acknowledged"])
def test_database_refuses_a_second_open_order_per_bin(db, open_state):
    (bin_id,) = seed(db.factory)
    with transaction(db.factory) as s:
        s.add(_order(bin_id, open_state, "o1"))
    with pytest.raises(IntegrityError), transaction(db.factory) as s:
        s.add(_order(bin_id, "created", "o2"))


def test_closed_orders_do_not_block_a_new_one(db):
    (bin_id,) = seed(db.factory)
    with transaction(db.factory) as s:
        for i, state in enumerate(["delivered", "failed", "cancelled", "delivered"]):
            s.add(_order(bin_id, state, f"closed{i}"))
        s.add(_order(bin_id, "created", "open"))
    with transaction(db.factory, readonly=True) as s:
        assert s.scalar(text("SELECT count(*) FROM orders")) == 5


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    finally:
        engine.dispose()


def test_bare_postgresql_url_uses_psycopg3():
    engine = make_engine("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_unit_weight_falls_back_to_the_sku(db):
    (bin_id,) = seed(db.factory)
    factory = make_session_factory(db.engine)
    with transaction(factory) as s:
        b = s.get(Bin, bin_id)
        assert b.effective_unit_weight_g == 4.2
        b.unit_weight_g = 5.0
        assert b.effective_unit_weight_g == 5.0
