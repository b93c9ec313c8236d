"""Server fixtures: a state DB per test on SQLite and on PostgreSQL, and a real webhook receiver."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from jitstock.server.db.migrate import upgrade
from jitstock.server.db.secrets import new_webhook_secret
from jitstock.server.db.session import SessionFactory, make_engine, make_session_factory
from tests.server.webhook_receiver import WebhookReceiver
from tests.services import IN_CI

# The pre-started PostgreSQL (trust auth); each test gets its own fresh database on it.
PG_ADMIN_DSN = os.environ.get(
    "JITSTOCK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _postgres_database() -> Iterator[str]:
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        msg = f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    name = f"jitstock_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(PG_ADMIN_DSN).set(
                drivername="postgresql+psycopg", database=name
            )
            yield url.render_as_string(hide_password=False)
        finally:
            # FORCE: a connection a killed test process left behind must not keep it alive.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a temp SQLite file, or a fresh database on the local PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        yield from _postgres_database()


@dataclass
class Db:
    """A migrated state DB: its URL, engine and session factory."""

    url: str
    engine: Engine
    factory: SessionFactory


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    """The state DB migrated to head."""
    upgrade(db_url)
    engine = make_engine(db_url)
    yield Db(db_url, engine, make_session_factory(engine))
    engine.dispose()


@pytest.fixture
def webhook_secret() -> str:
    """The supplier's signing secret."""
    return new_webhook_secret()


@pytest.fixture
def receiver(webhook_secret: str) -> Iterator[WebhookReceiver]:
    """A supplier endpoint that verifies signatures with ``webhook_secret``."""
    r = WebhookReceiver(webhook_secret)
    r.start()
    yield r
    r.stop()
