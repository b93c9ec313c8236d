"""Session-wide fixtures: real services on free ports in temp dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import InfluxDB, Mosquitto


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
