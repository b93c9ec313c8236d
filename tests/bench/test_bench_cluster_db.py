"""`jitstock bench cluster` drops the PostgreSQL database of each setup at its end,
also when the setup fails and a node's connection is still open."""

from __future__ import annotations

import psycopg
import pytest

from jitstock.bench.cluster import fresh_database
from jitstock.server.cluster.leader import libpq_url
from tests.server.conftest import PG_ADMIN_DSN, _postgres_database


def _databases() -> set[str]:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def test_the_setup_database_is_dropped_even_after_a_failure() -> None:
    probe = (
        _postgres_database()
    )  # PostgreSQL reachable (skips or fails like the others)
    next(probe)
    probe.close()  # type: ignore[attr-defined]
    before = _databases()
    with pytest.raises(RuntimeError, match="node died"):  # noqa: PT012
        with fresh_database(PG_ADMIN_DSN) as url:
            name = url.rsplit("/", 1)[1]
            assert name in _databases() - before
            left = psycopg.connect(libpq_url(url))  # a killed node's backend
            raise RuntimeError("node died")
    assert name not in _databases()
    left.close()
    ok = []
    with fresh_database(PG_ADMIN_DSN) as url:
        ok.append(url.rsplit("/", 1)[1])
    assert not set(ok) & _databases()
