"""Alembic environment: run by jitstock.server.db.migrate, no alembic.ini needed.

The caller hands over an open connection in ``config.attributes["connection"]``
(so our engine pragmas apply); ``sqlalchemy.url`` is the fallback for running
``alembic`` by hand during development.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from jitstock.server.db.models import Base
from jitstock.server.db.session import make_engine

# Any constant: two server processes starting together must not both migrate.
_PG_MIGRATION_LOCK = 0x6A697473  # "jits"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
            )
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the caller's connection, or one made from sqlalchemy.url."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError(
        "offline (SQL script) migrations are not supported; use upgrade(url)"
    )
run_migrations_online()
