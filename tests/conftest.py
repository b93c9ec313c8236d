"""Session-wide fixtures: real services on free ports in temp dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import InfluxDB, Mosquitto


def _start_first(item: pytest.Item) -> tuple[int, float]:
    """Slow tests first, the longest allowed (their timeout) first among them."""
    if item.get_closest_marker("slow") is None:
        return (1, 0.0)
    timeout = item.get_closest_marker("timeout")
    limit = (
        timeout.args[0] if timeout and timeout.args else item.config.getini("timeout")
    )
    return (0, -float(limit or 0))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first, the longest allowed first; the rest keep their order.

    A module moves as a whole (its module fixtures are set up once).  With pytest-xdist's
    ``--dist loadscope`` (``make test``) a worker takes a module at a time, so the long
    tests start at once and run beside the short ones instead of alone at the end of
    the run (the demo tests, collected last, used to fill the last minutes by
    themselves).
    """
    rank: dict[str, tuple[int, float]] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        rank[module] = min(rank.get(module, (1, 0.0)), _start_first(item))
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda it: (rank[it.nodeid.split("::", 1)[0]], order[id(it)]))


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A private broker per test, free to stop and restart."""
    broker = Mosquitto(Path(tmp_path_factory.mktemp("mosquitto")))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def shared_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for tests that never stop it (topics keep tests apart)."""
    broker = Mosquitto(Path(tmp_path_factory.mktemp("mosquitto-shared")))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """One InfluxDB for tests that never stop it (each test uses its own database)."""
    server = InfluxDB(Path(tmp_path_factory.mktemp("influxdb-shared")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influxdb_private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """A private InfluxDB per test, free to stop and restart (outage tests)."""
    server = InfluxDB(Path(tmp_path_factory.mktemp("influxdb")))
    server.start()
    yield server
    server.stop()
