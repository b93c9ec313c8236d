"""SQLite writers of one process queue on the file's lock (jitstock.server.db.sqlite_gate),
never in SQLite's busy handler, and a lock is given back on every way a transaction ends."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import OperationalError

# the server's class-wide engine listeners (commit, rollback), present as in the server
from jitstock.server import catalog_cache  # noqa: F401
from jitstock.server.db import sqlite_gate
from jitstock.server.db.session import make_engine, make_session_factory, transaction

WRITERS = 6
EACH = 40


def engine_without_busy_wait(path: Path) -> Engine:
    """An engine whose connections would fail at once on a taken SQLite write lock."""
    engine = make_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _no_busy_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=0")  # after make_engine's 10 s

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (writer INTEGER, n INTEGER)"))
    return engine


def test_concurrent_writers_of_one_process_never_meet_a_locked_database(
    tmp_path: Path,
) -> None:
    engine = engine_without_busy_wait(tmp_path / "gate.db")
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for n in range(EACH):
                with engine.begin() as conn:  # BEGIN IMMEDIATE, then a read and a write
                    conn.execute(text("SELECT COUNT(*) FROM t")).scalar()
                    conn.execute(
                        text("INSERT INTO t VALUES (:w, :n)"), {"w": writer, "n": n}
                    )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]  # without the gate: "database is locked" at once
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT writer, n FROM t")).all()
    assert sorted(rows) == [(w, n) for w in range(WRITERS) for n in range(EACH)]
    engine.dispose()


@pytest.mark.parametrize("end", ["error", "rollback", "invalidate", "close"])
def test_the_lock_comes_back_however_a_transaction_ends(
    tmp_path: Path, end: str
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ends.db'}", busy_timeout_ms=2_000)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))

    def fail_inside() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            raise ZeroDivisionError

    if end == "error":
        with pytest.raises(ZeroDivisionError):
            fail_inside()
    else:
        conn = engine.connect()
        tx = conn.begin()
        conn.execute(text("INSERT INTO t VALUES (1)"))
        if end == "rollback":
            tx.rollback()
        elif end == "invalidate":  # a lost connection: then rolled back, as documented
            conn.invalidate()
            tx.rollback()
        conn.close()

    # another thread writes: with the lock kept, it would fail after 2 s
    done: list[object] = []

    def other() -> None:
        try:
            with engine.begin() as c:
                c.execute(text("INSERT INTO t VALUES (2)"))
            done.append("ok")
        except OperationalError as exc:
            done.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join(60)
    assert done == ["ok"]
    with engine.connect() as c:
        assert c.execute(text("SELECT x FROM t")).scalars().all() == [2]
    engine.dispose()


def test_a_writer_that_cannot_get_the_lock_fails_as_sqlite_would(
    tmp_path: Path,
) -> None:
    """A transaction left open holds the lock: the next writer fails after the busy
    timeout with "database is locked", which ingest retries as transient."""
    engine = make_engine(f"sqlite:///{tmp_path / 'stuck.db'}", busy_timeout_ms=200)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = engine.connect()
    holder.begin()
    holder.execute(text("INSERT INTO t VALUES (1)"))
    failure: list[BaseException] = []

    def other() -> None:
        try:
            with engine.begin() as c:
                c.execute(text("INSERT INTO t VALUES (2)"))
        except OperationalError as exc:
            failure.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join(60)
    assert failure
    assert "database is locked" in str(failure[0])
    holder.commit()
    holder.close()
    with engine.begin() as c:  # and the lock works again
        c.execute(text("INSERT INTO t VALUES (3)"))
        assert c.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [1, 3]
    engine.dispose()


class GateMachine(RuleBasedStateMachine):
    """Connections of one engine begin, write, commit, roll back, close and are
    invalidated in random order; the file's lock is held exactly while one of them has
    a writing transaction open, and the table holds exactly the committed rows."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        path = Path(self.dir.name) / "machine.db"
        self.engine = make_engine(f"sqlite:///{path}", busy_timeout_ms=50)
        with self.engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        self.gate = sqlite_gate.gate_for(str(path))
        self.conns: list[Connection] = [self.engine.connect() for _ in range(3)]
        self.open_rows: list[list[int] | None] = [None, None, None]  # the model
        self.committed: list[int] = []
        self.next = 0

    def writer(self) -> int | None:
        return next(
            (k for k, rows in enumerate(self.open_rows) if rows is not None), None
        )

    @rule(k=st.integers(0, 2))
    def write(self, k: int) -> None:
        holder = self.writer()
        if holder is not None and holder != k:
            # another connection writes: this one waits the busy timeout, then fails
            with pytest.raises(OperationalError, match="database is locked"):
                with self.conns[k].begin():
                    self.conns[k].execute(text("INSERT INTO t VALUES (-1)"))
            return
        if holder is None:
            self.conns[k].begin()
            self.open_rows[k] = []
        self.next += 1
        self.conns[k].execute(text("INSERT INTO t VALUES (:x)"), {"x": self.next})
        rows = self.open_rows[k]
        assert rows is not None
        rows.append(self.next)

    @rule(k=st.integers(0, 2))
    def commit(self, k: int) -> None:
        if self.open_rows[k] is None:
            return
        self.conns[k].commit()
        self.committed += self.open_rows[k] or []
        self.open_rows[k] = None

    @rule(k=st.integers(0, 2))
    def roll_back(self, k: int) -> None:
        if self.open_rows[k] is None:
            return
        self.conns[k].rollback()
        self.open_rows[k] = None

    @rule(k=st.integers(0, 2), invalidate=st.booleans())
    def lose_connection(self, k: int, invalidate: bool) -> None:
        if invalidate:  # a lost connection, then its transaction rolled back
            self.conns[k].invalidate()
            self.conns[k].rollback()
        self.conns[k].close()  # an open transaction is rolled back
        self.conns[k] = self.engine.connect()
        self.open_rows[k] = None

    @rule(k=st.integers(0, 2))
    def read(self, k: int) -> None:
        """A read-only connection never waits for the writer (WAL, no lock taken)."""
        if self.open_rows[k] is not None:
            return
        with transaction(make_session_factory(self.engine), readonly=True) as s:
            s.execute(text("SELECT COUNT(*) FROM t")).scalar()

    @invariant()
    def lock_held_exactly_while_a_transaction_writes(self) -> None:
        assert self.gate.locked() == (self.writer() is not None)

    @invariant()
    def the_table_holds_the_committed_rows(self) -> None:
        holder = self.writer()
        if holder is not None:  # the writer sees its own rows too
            return
        with self.engine.connect() as c:
            got = c.execute(text("SELECT x FROM t")).scalars().all()
        assert sorted(got) == sorted(self.committed)

    def teardown(self) -> None:
        for c in self.conns:
            c.close()
        self.engine.dispose()
        self.dir.cleanup()


TestGateMachine = GateMachine.TestCase
TestGateMachine.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None
)
