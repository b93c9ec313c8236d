"""Engines, sessions and transactions for SQLite (default) and PostgreSQL.

SQLite: WAL (readers never block the writer), foreign keys on, a busy timeout, and
``BEGIN IMMEDIATE`` for every transaction that may write, the process's writers
queued on one lock per file (:mod:`jitstock.server.db.sqlite_gate`).  A deferred transaction
that reads and then writes fails at once with SQLITE_BUSY (no waiting) when another
connection committed in between, so writers take the write lock up front and
queue on the busy timeout instead; :func:`transaction` with ``readonly=True`` keeps
the cheap deferred ``BEGIN`` for pure reads.  Managing BEGIN ourselves (the
driver's own transaction handling off) is also what makes SAVEPOINT work on
pysqlite.

PostgreSQL: ``postgresql+psycopg://`` (psycopg 3); a bare ``postgresql://`` is
mapped to it.  READ COMMITTED, with per-bin decisions serialised by row locks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from jitstock.server.db import sqlite_gate
from jitstock.server.private_files import ensure_private_file

# How long a SQLite writer waits for the write lock before "database is locked":
# longer than any ingest flush, short enough to surface a stuck writer.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Execution option naming the BEGIN flavour of a SQLite transaction.
_BEGIN_OPTION = "jitstock_sqlite_begin"

SessionFactory = sessionmaker[Session]


def normalise_url(url: str) -> str:
    """Map bare ``postgresql://``/``postgres://`` URLs to the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    echo: bool = False,
) -> Engine:
    """An engine for ``url`` with the pragmas/pooling jitstock relies on.

    ``sqlite_synchronous`` FULL makes every commit survive power loss (MQTT messages
    are acknowledged after it); NORMAL survives process crashes only but is faster.
    """
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(
            parsed.render_as_string(hide_password=False),
            sqlite_synchronous,
            busy_timeout_ms,
            echo,
        )
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, echo=echo)
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string()!r}: use sqlite:/// or postgresql+psycopg://"
    )


def _sqlite_engine(
    url: str, synchronous: str, busy_timeout_ms: int, echo: bool
) -> Engine:
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"bad sqlite_synchronous {synchronous!r}")
    database = make_url(url).database
    in_memory = database in (None, "", ":memory:") or "mode=memory" in url
    connect_args: dict[str, Any] = {"check_same_thread": False}
    kwargs: dict[str, Any] = {"echo": echo, "connect_args": connect_args}
    gate = None
    if in_memory:
        # One shared connection, or every pooled connection would see its own empty DB.
        kwargs["poolclass"] = StaticPool
    elif database is not None and not database.startswith("file:"):
        ensure_private_file(database)  # it holds webhook secrets
        # writers of this process queue on a lock, not in SQLite's busy handler
        gate = sqlite_gate.gate_for(database)
        connect_args["factory"] = sqlite_gate.GatedConnection
    gate_wait_s = busy_timeout_ms / 1000.0
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        # Autocommit at the driver level: we emit BEGIN ourselves (see module doc).
        dbapi_conn.isolation_level = None
        if isinstance(dbapi_conn, sqlite_gate.GatedConnection):
            dbapi_conn.gate_info = record.info
        cur = dbapi_conn.cursor()
        try:
            if not in_memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        if mode == "DEFERRED":
            conn.exec_driver_sql("BEGIN")
            return
        if gate is None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        sqlite_gate.take(gate, conn.info, gate_wait_s)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            sqlite_gate.give_back(conn.info)
            raise

    if gate is not None:

        @event.listens_for(engine.pool, "checkin")
        def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
            # the backstop: a connection back in the pool holds no transaction
            sqlite_gate.give_back(record.info)

    return engine


def make_session_factory(engine: Engine) -> SessionFactory:
    """Sessions whose objects stay readable after commit (no expire_on_commit)."""
    return sessionmaker(engine, expire_on_commit=False)


def is_postgresql(bind: Session | Engine) -> bool:
    """Whether a session's or engine's database is PostgreSQL."""
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name == "postgresql"


@contextmanager
def transaction(
    factory: SessionFactory, *, readonly: bool = False
) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error.

    On SQLite a writing transaction holds the write lock from its first statement;
    pass ``readonly=True`` for reads that must not queue behind writers.
    """
    with factory() as session, session.begin():
        if readonly and session.get_bind().dialect.name == "sqlite":
            # Must come before the first statement: it chooses how BEGIN is emitted.
            session.connection(execution_options={_BEGIN_OPTION: "DEFERRED"})
        yield session
