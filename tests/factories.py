"""Factories for tests: a small plant on real SQLite files, and weights for counts."""

from __future__ import annotations

import time
from pathlib import Path

from jitstock.server.db.migrate import upgrade
from jitstock.server.db.session import make_engine, make_session_factory
from jitstock.server.ingest import Ingest
from jitstock.server.metrics import Metrics
from jitstock.server.registry import BinRegistry
from jitstock.server.seed import BinSeed, SupplierSeed, seed_plant
from jitstock.server.state import SqlState
from jitstock.server.tsdb import open_store

NOW_MS = time.time_ns() // 1_000_000
UNIT_G = 12.5
TARE_G = 500.0


def grams_for(count: int) -> float:
    """Gross weight of a bin (tare TARE_G) holding `count` parts of UNIT_G."""
    return TARE_G + count * UNIT_G


def plant_bins(reorder_point: int = 20, order_qty: int = 50) -> list[BinSeed]:
    """Bins B1, B2 on agent pi-1 and B3 on pi-2, all supplied by S1."""
    return [
        BinSeed(
            b, agent, "SKU-" + b, UNIT_G, TARE_G, reorder_point, order_qty, 200, "S1"
        )
        for b, agent in (("B1", "pi-1"), ("B2", "pi-1"), ("B3", "pi-2"))
    ]


class Plant:
    """State DB + time series store + ingest wired as the server wires them, on temp files."""

    def __init__(
        self,
        tmp: Path,
        db_url: str | None = None,
        tsdb=None,
        webhook_url: str | None = None,
    ) -> None:
        self.db_url = db_url or f"sqlite:///{tmp / 'state.db'}"
        upgrade(self.db_url)
        self.engine = make_engine(self.db_url)
        self.session_factory = make_session_factory(self.engine)
        seed_plant(
            self.session_factory,
            "plant1",
            plant_bins(),
            [
                SupplierSeed(
                    "S1",
                    "Supplier One",
                    webhook_url,
                    "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                )
            ],
        )
        self.tsdb = tsdb or open_store(
            influx_url=None, sqlite_path=tmp / "ts.db", spool_path=tmp / "spool.db"
        )
        self.metrics = Metrics()
        self.start_ingest()

    def start_ingest(self) -> None:
        """Registry, state writer and ingest as a starting server process builds them
        (called again: a restart after a crash, nothing of the old memory written)."""
        self.registry = BinRegistry()
        self.state = SqlState(self.session_factory, self.registry)
        self.registry.set_loader(self.state.load_registry)
        self.registry.reload()
        self.ingest = Ingest(self.tsdb, self.state, self.registry, self.metrics)

    def metric(self, name: str, **labels: str) -> float:
        """Current value of a metric sample (0 when never set)."""
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def close(self) -> None:
        self.ingest.stop()
        self.tsdb.close()
        self.engine.dispose()
