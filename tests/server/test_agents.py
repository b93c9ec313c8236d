"""Agents as records (issue 9, cases 9 and 10): which bins an agent may receive into, on a
real state DB (SQLite and PostgreSQL), and how its state follows status and traffic."""

from __future__ import annotations

from typing import Any

import pytest

from jitstock.server.agents import Liveness, may_receive
from jitstock.server.db.models import Agent, Bin, Site
from jitstock.server.db.session import transaction
from tests.server.db_factories import SITE, seed

NOW = 1_800_000_000_000
SILENT_MS = 120_000


@pytest.fixture
def plant(db: Any) -> Any:
    """bin-0 and bin-1 fed by pi-1, bin-2 loose; a second site with bin-x; dock agents."""
    seed(db.factory, bins=3)
    with transaction(db.factory) as s:
        s.add(Site(id="plant2", name="Plant 2"))
        s.flush()
        s.add(Agent(id="pi-1", site_id=SITE))
        s.add(Agent(id="dock-any", site_id=SITE, receive_bins=["*"]))
        s.add(Agent(id="dock-b2", site_id=SITE, receive_bins=["bin-2"]))
        s.add(Agent(id="dock-none", site_id=SITE))
        s.add(Agent(id="dock-2", site_id="plant2", receive_bins=["*"]))
        s.flush()
        for b in ("bin-0", "bin-1"):
            s.get(Bin, b).agent_id = "pi-1"  # type: ignore[union-attr]
        s.add(Bin(id="bin-x", site_id="plant2", sku_id="M6-bolt", supplier_id="acme"))
    return db


@pytest.mark.parametrize(
    ("agent", "bin_id", "allowed"),
    [
        # no receive_bins: the bins it feeds
        ("pi-1", "bin-0", True),
        ("pi-1", "bin-2", False),
        ("pi-1", "bin-x", False),
        # ["*"]: any bin of its own site
        ("dock-any", "bin-0", True),
        ("dock-any", "bin-2", True),
        ("dock-any", "bin-x", False),
        ("dock-2", "bin-x", True),
        ("dock-2", "bin-0", False),
        # a list: those bins
        ("dock-b2", "bin-2", True),
        ("dock-b2", "bin-0", False),
        # no bins and no receive_bins: nowhere
        ("dock-none", "bin-0", False),
        # unknown agent or bin
        ("ghost", "bin-0", False),
        ("dock-any", "no-such-bin", False),
    ],
)
def test_may_receive_follows_receive_bins(
    plant: Any, agent: str, bin_id: str, allowed: bool
) -> None:
    with transaction(plant.factory, readonly=True) as s:
        assert may_receive(s, agent, bin_id) is allowed


def test_a_listed_bin_of_another_site_is_refused(plant: Any) -> None:
    with transaction(plant.factory) as s:
        s.get(Agent, "dock-b2").receive_bins = ["bin-x"]  # type: ignore[union-attr]
    with transaction(plant.factory, readonly=True) as s:
        assert may_receive(s, "dock-b2", "bin-x") is False


@pytest.mark.parametrize(
    ("life", "now", "state"),
    [
        # never heard from: unknown, not offline
        (Liveness(None, None, None), NOW, "unknown"),
        # a PLC: readings, never a status
        (Liveness(None, None, NOW - 5_000), NOW, "online"),
        (Liveness(None, None, NOW - 5_000), NOW + SILENT_MS, "offline"),
        # an edge agent: online status, then traffic
        (Liveness("online", NOW - 60_000, NOW - 1_000), NOW, "online"),
        # its last will, nothing since
        (Liveness("offline", NOW - 1_000, NOW - 30_000), NOW, "offline"),
        (Liveness("offline", NOW - 1_000, None), NOW, "offline"),
        # a status and a reading in the same flush: the status wins
        (Liveness("offline", NOW - 1_000, NOW - 1_000), NOW, "offline"),
        # traffic after the last will: back (a device that does not resend status)
        (Liveness("offline", NOW - 10_000, NOW - 1_000), NOW, "online"),
    ],
)
def test_state_from_status_and_traffic(life: Liveness, now: int, state: str) -> None:
    assert life.state(now, SILENT_MS) == state


def test_offline_reason_says_which() -> None:
    assert "last will" in Liveness("offline", NOW, NOW - 1).offline_reason(NOW)
    silent = Liveness(None, None, NOW - 130_000).offline_reason(NOW)
    assert silent.startswith("silent for 130 s")
