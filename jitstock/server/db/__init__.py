"""State DB: models, engines/sessions, migrations (SQLite by default, PostgreSQL for scale)."""

from jitstock.server.db.migrate import (
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from jitstock.server.db.session import (
    SessionFactory,
    is_postgresql,
    make_engine,
    make_session_factory,
    transaction,
)

__all__ = [
    "SessionFactory",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_postgresql",
    "make_engine",
    "make_session_factory",
    "transaction",
    "upgrade",
]
