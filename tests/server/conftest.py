"""Server fixtures: a state DB per test on SQLite and on PostgreSQL, and a real webhook receiver."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from jitstock.server.db.migrate import upgrade
from jitstock.server.db.secrets import new_webhook_secret
from jitstock.server.db.session import SessionFactory, make_engine, make_session_factory
from tests.server.pki import Pki, make_pki
from tests.server.webhook_receiver import WebhookReceiver
from tests.services import IN_CI

# The pre-started PostgreSQL (trust auth); each test gets its own fresh database on it.
PG_ADMIN_DSN = os.environ.get(
    "JITSTOCK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        msg = f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def _database_url(name: str) -> str:
    url = make_url(PG_ADMIN_DSN).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def _postgres_database(template: str | None = None) -> Iterator[str]:
    admin = _admin()
    name = f"jitstock_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(
            f'CREATE DATABASE "{name}"'
            + (f' TEMPLATE "{template}"' if template is not None else "")
        )
        try:
            yield _database_url(name)
        finally:
            # FORCE: a connection a killed test process left behind must not keep it alive.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_templates(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """Per worker, a database migrated to head once per backend, made on first use: the
    ``db`` fixture's fresh databases are copies of it (a copy takes a few milliseconds on
    SQLite and half a second on PostgreSQL, the migrations one to two seconds).  The
    SQLite template is a file path, the PostgreSQL one a database name."""
    made: dict[str, str] = {}
    yield made
    if "postgresql" in made:
        with _admin() as admin:
            admin.execute(
                f'DROP DATABASE IF EXISTS "{made["postgresql"]}" WITH (FORCE)'
            )


def _template(
    made: dict[str, str], backend: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    if backend not in made:
        if backend == "sqlite":
            path = tmp_path_factory.mktemp("migrated") / "template.db"
            upgrade(f"sqlite:///{path}")
            made[backend] = str(path)
        else:
            name = f"jitstock_template_{secrets.token_hex(6)}"
            with _admin() as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            made[backend] = name  # dropped with the session, migrated or not
            # upgrade disposes of its engine: no session is left on the template
            upgrade(_database_url(name))
    return made[backend]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a temp SQLite file, or a fresh database on the local
    PostgreSQL.  For a test that uses ``db`` it is a copy of a database already migrated
    to head (``migrated_templates``); ``db`` still runs the migrations (none left to do)."""
    template = None
    if "db" in request.fixturenames:
        made = request.getfixturevalue("migrated_templates")
        factory = request.getfixturevalue("tmp_path_factory")
        template = _template(made, request.param, factory)
    if request.param == "sqlite":
        path = tmp_path / "state.db"
        if template is not None:
            shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
    else:
        yield from _postgres_database(template)


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


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA, a server certificate it signed (127.0.0.1 and localhost), a wrong CA."""
    return make_pki(tmp_path_factory.mktemp("pki"))
