"""The small plant the alert tests raise alerts in, and their hand-moved clock."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from jitstock.server.db.models import Agent, Bin, Sku
from jitstock.server.db.session import transaction
from jitstock.server.seed import BinSeed, seed_plant

NOW = 1_800_000_000_000


class Clock:
    """Time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.ms = NOW

    def monotonic(self) -> float:
        return self.ms / 1000

    def time_ms(self) -> int:
        return self.ms

    def sleep(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


def plant(db: Any, sku_name: str | None = None) -> None:
    """Bins B1 and B2 of SKU-1 on agent pi-1, 20 on hand each, agent online at NOW."""
    seed_plant(
        db.factory,
        "plant1",
        [BinSeed(f"B{i}", "pi-1", "SKU-1", 10.0, 0.0, 5, 10, 40, None) for i in (1, 2)],
    )
    with transaction(db.factory) as s:
        s.execute(update(Bin).values(on_hand=20, last_seen_ms=NOW))
        s.execute(update(Agent).values(online=True, last_seen_ms=NOW))
        if sku_name is not None:
            s.execute(update(Sku).values(name=sku_name))
