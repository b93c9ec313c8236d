"""Core statements run as driver SQL (jitstock.server.driver_sql.Prepared) return what
the Core statement returns, for any list length and any ids, on SQLite and PostgreSQL."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, insert, select, update

from jitstock.server.db.models import AuditLog, Bin
from jitstock.server.db.session import transaction
from jitstock.server.driver_sql import Prepared
from jitstock.server.reorder_batch import _BINS, _BINS_STMT, _ON_ORDER, _ON_ORDER_STMT
from tests.server.db_factories import seed

IDS = st.lists(
    st.one_of(
        st.sampled_from(["bin-0", "bin-1", "bin-2", "bin-3"]),
        st.text(max_size=40),
        st.just("x" * 5000),
    ),
    max_size=12,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ids=IDS)
def test_prepared_selects_return_the_core_rows(db, ids):
    ids = [i.replace("\0", "") for i in ids]  # PostgreSQL text has no NUL
    if not ids:
        return  # an empty IN list is not asked for (decide returns first)
    if not _seeded(db):
        seed(db.factory, bins=4, on_hand=10)
    with transaction(db.factory, readonly=True) as s:
        conn = s.connection()
        for prepared, stmt in ((_BINS, _BINS_STMT), (_ON_ORDER, _ON_ORDER_STMT)):
            core = [tuple(r) for r in conn.execute(stmt, {"ids": ids})]
            raw = [tuple(r) for r in prepared.execute(conn, {"ids": ids})]
            # a SQLite boolean comes back as 0/1 from the driver: equal as values
            assert raw == core


def _seeded(db) -> bool:
    with transaction(db.factory, readonly=True) as s:
        return s.scalar(select(Bin.id).limit(1)) is not None


def test_update_and_executemany_insert_write_what_core_writes(db):
    seed(db.factory, bins=3, on_hand=10)
    bump = Prepared(
        update(Bin)
        .where(Bin.id.in_(bindparam("ids", expanding=True)), Bin.on_hand == 10)
        .values(on_hand=bindparam("n")),
        ["ids"],
    )
    with transaction(db.factory) as s:
        done = bump.execute(s.connection(), {"ids": ["bin-0", "bin-2", "nope"], "n": 7})
        assert done.rowcount == 2
    add = Prepared(
        insert(AuditLog.__table__).values(
            at_ms=bindparam("at"),
            actor=bindparam("actor"),
            action="test",
            entity="bin",
            entity_id=bindparam("e"),
        )
    )
    with transaction(db.factory) as s:
        add.executemany(
            s.connection(),
            [{"at": 2**62, "actor": "ünï", "e": str(i)} for i in range(3)],
        )
    with transaction(db.factory, readonly=True) as s:
        counts = dict(s.execute(select(Bin.id, Bin.on_hand)).all())
        audits = s.execute(
            select(AuditLog.at_ms, AuditLog.actor, AuditLog.action, AuditLog.entity_id)
            .where(AuditLog.action == "test")
            .order_by(AuditLog.entity_id)
        ).all()
    assert counts == {"bin-0": 7, "bin-1": 10, "bin-2": 7}
    assert [tuple(a) for a in audits] == [
        (2**62, "ünï", "test", str(i)) for i in range(3)
    ]
