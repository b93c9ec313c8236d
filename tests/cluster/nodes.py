"""A cluster node's ingest without MQTT, for tests that drive several nodes on one
PostgreSQL database: its own engine, bin registry, ``ClusterState``, ``ClusterIngest``
and history store."""

from __future__ import annotations

from pathlib import Path

from jitstock.server.cluster.ingest import ClusterIngest
from jitstock.server.cluster.state import ClusterState
from jitstock.server.db.session import make_engine, make_session_factory
from jitstock.server.flush import RetryFlush
from jitstock.server.ingest_levels import MEASUREMENT
from jitstock.server.metrics import Metrics
from jitstock.server.mqtt import Incoming
from jitstock.server.registry import BinRegistry
from jitstock.server.tsdb import open_store


class Node:
    """One cluster node's ingest (its own engine, registry, history store), no MQTT."""

    def __init__(self, db_url: str, tmp: Path) -> None:
        tmp.mkdir(exist_ok=True)
        self.engine = make_engine(db_url)
        self.registry = BinRegistry()
        self.state = ClusterState(make_session_factory(self.engine), self.registry)
        self.registry.set_loader(self.state.load_registry)
        self.registry.reload()
        self.metrics = Metrics()
        self.tsdb = open_store(
            influx_url=None, sqlite_path=tmp / "ts.db", spool_path=tmp / "spool.db"
        )
        self.ingest = ClusterIngest(self.tsdb, self.state, self.registry, self.metrics)

    def apply(self, items: list[Incoming]) -> None:
        """Process ``items`` as the worker does: a flush refused for batches applied
        before is redone."""
        for _ in range(3):
            try:
                self.ingest.process(items)
                return
            except RetryFlush:
                continue
        raise AssertionError("flush still refused after three tries")

    def metric(self, name: str) -> float:
        return self.metrics.registry.get_sample_value(name) or 0.0

    def readings(self) -> float:
        return self.metric("jitstock_readings_total")

    def history(self, bin_id: str) -> list[float]:
        rows = self.tsdb.query_raw(MEASUREMENT, {"bin": bin_id}, 0, 2**62)
        return sorted(float(r["grams"]) for r in rows)

    def close(self) -> None:
        self.ingest.stop()
        self.tsdb.close()
        self.engine.dispose()
