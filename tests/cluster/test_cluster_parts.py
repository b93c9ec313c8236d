"""The cluster's parts on a real PostgreSQL: one leader at a time (advisory lock) with
takeover when the leader goes, change notifications, the low-water mark, the settings."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import update

from jitstock.server.cluster.changes import ChangeListener
from jitstock.server.cluster.leader import Leadership
from jitstock.server.cluster.node import check_settings, client_id, subscriptions
from jitstock.server.cluster.prune import next_mark
from jitstock.server.db.models import Bin, Supplier
from jitstock.server.db.session import transaction
from jitstock.server.db.supplier_models import SupplierItem
from jitstock.server.ingest import SUBSCRIPTIONS
from jitstock.server.settings import ServerSettings, SettingRefused
from tests.factories import Plant
from tests.server.conftest import _postgres_database
from tests.waits import wait_until

DEADLINE_S = 30.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    gen = _postgres_database()
    yield next(gen)
    gen.close()


class Node:
    def __init__(self, url: str) -> None:
        self.elected = threading.Event()
        self.terms = 0
        self.leadership = Leadership(url, self._elected, self.elected.clear, try_s=0.2)

    def _elected(self) -> None:
        self.terms += 1
        self.elected.set()


def test_one_leader_at_a_time_and_another_takes_over(pg_url: str) -> None:
    nodes = [Node(pg_url) for _ in range(3)]
    for n in nodes:
        n.leadership.start()
    try:
        wait_until(
            lambda: any(n.elected.is_set() for n in nodes), DEADLINE_S, what="a leader"
        )
        first = next(n for n in nodes if n.elected.is_set())
        for _ in range(10):  # several tries of the followers later: still one
            assert sum(n.elected.is_set() for n in nodes) == 1
            threading.Event().wait(0.1)
        first.leadership.stop()  # its connection closes, like a killed process's
        assert not first.elected.is_set()
        rest = [n for n in nodes if n is not first]
        wait_until(
            lambda: any(n.elected.is_set() for n in rest),
            DEADLINE_S,
            what="a new leader",
        )
        assert sum(n.elected.is_set() for n in rest) == 1
    finally:
        for n in nodes:
            n.leadership.stop()


@contextmanager
def _listening(
    pg_url: str, on_orders: Callable[[], None] = lambda: None
) -> Iterator[tuple[ChangeListener, list[int]]]:
    """A started ChangeListener that has LISTENed and made its reload on connect; the
    list gets one entry per registry reload."""
    registry_calls: list[int] = []
    listener = ChangeListener(pg_url, lambda: registry_calls.append(1), on_orders)
    listener.start()
    try:
        wait_until(listener.listening.is_set, DEADLINE_S, what="LISTEN")
        wait_until(lambda: registry_calls, DEADLINE_S, what="the reload on connect")
        yield listener, registry_calls
    finally:
        listener.stop()


def test_a_bin_change_reaches_the_listener_and_ingest_writes_do_not(
    tmp_path, pg_url: str
) -> None:
    plant = Plant(tmp_path, db_url=pg_url)
    order_calls: list[int] = []
    try:
        with _listening(pg_url, lambda: order_calls.append(1)) as (
            listener,
            registry_calls,
        ):
            before = len(registry_calls)
            # what ingest writes (counts, reading times) notifies nobody
            with transaction(plant.session_factory) as s:
                s.execute(
                    update(Bin).where(Bin.id == "B1").values(on_hand=7, last_seen_ms=1)
                )
            with transaction(plant.session_factory) as s:
                s.execute(update(Bin).where(Bin.id == "B1").values(reorder_point=33))
            wait_until(
                lambda: len(registry_calls) > before,
                DEADLINE_S,
                what="a registry reload",
            )
            assert listener.received == 1
            assert not order_calls
    finally:
        plant.close()


@pytest.mark.parametrize(
    ("mark", "rows", "expected"),
    [
        (0, [], (0, 0)),
        (0, [(1, 0), (2, 0), (4, 0)], (2, 0)),  # 3 missing, not waited for long enough
        (0, [(1, 0), (2, 0), (4, -10_000)], (4, 1)),  # waited: one gap
        (0, [(5, 0), (6, 0)], (0, 0)),  # a first batch that is not seq 1 waits too
        (0, [(5, -10_000), (6, 0)], (6, 0)),  # then starts there (no gap: the past)
        (7, [(8, 0), (9, 0), (12, -10_000), (13, 0)], (13, 2)),
        (7, [(9, 0)], (7, 0)),
        # a broken counter (2**63 - 1 once) is never passed over
        (7, [(8, 0), (2**63 - 1, -10_000)], (8, 0)),
    ],
)
def test_low_water_mark(
    mark: int, rows: list[tuple[int, int]], expected: tuple[int, int]
) -> None:
    assert next_mark(mark, rows, now_ms=0, gap_wait_ms=5_000) == expected


def test_cluster_settings_are_checked() -> None:
    with pytest.raises(SettingRefused, match="PostgreSQL"):
        check_settings(ServerSettings(cluster=True, cluster_node="n1"))
    pg = "postgresql://x@127.0.0.1/db"
    with pytest.raises(SettingRefused, match="JITSTOCK_CLUSTER_NODE"):
        check_settings(ServerSettings(cluster=True, db_url=pg))
    with pytest.raises(SettingRefused, match="MQTT_PROTOCOL=5"):
        check_settings(
            ServerSettings(
                cluster=True, db_url=pg, cluster_node="n1", mqtt_protocol="3.1.1"
            )
        )
    with pytest.raises(ValueError, match="pattern"):
        ServerSettings(cluster=True, db_url=pg, cluster_node="n 1/#")
    with pytest.raises(SettingRefused, match="JITSTOCK_INFLUX_URL"):
        check_settings(ServerSettings(cluster=True, db_url=pg, cluster_node="n1"))
    s = ServerSettings(
        cluster=True,
        db_url=pg,
        cluster_node="n1",
        cluster_group="g",
        influx_url="http://127.0.0.1:8086",
    )
    check_settings(s)
    assert client_id(s) == "jitstock-server-n1"
    subs = subscriptions(s, SUBSCRIPTIONS)
    assert [t for t in subs if t.startswith("$share/g/")] == [
        "$share/g/" + t for t in SUBSCRIPTIONS if not t.endswith("/status")
    ]
    assert any(t.endswith("/status") and not t.startswith("$share") for t in subs)
    single = ServerSettings()
    check_settings(single)
    assert client_id(single) == "jitstock-server"
    assert subscriptions(single, SUBSCRIPTIONS) == SUBSCRIPTIONS


def test_a_supplier_change_reaches_the_listener_and_other_columns_do_not(
    tmp_path, pg_url: str
) -> None:
    """What an order's claim reads about suppliers (cached between flushes) notifies every
    node, so another node's next order uses the new webhook; other columns do not."""
    plant = Plant(tmp_path, db_url=pg_url)
    try:
        with _listening(pg_url) as (listener, registry_calls):
            before = len(registry_calls)
            with transaction(plant.session_factory) as s:
                s.execute(update(Supplier).values(contact="someone else"))
            with transaction(plant.session_factory) as s:
                s.execute(update(Supplier).values(webhook_url="http://127.0.0.1:9/new"))
            wait_until(
                lambda: len(registry_calls) > before,
                DEADLINE_S,
                what="a registry reload",
            )
            assert listener.received == 1  # the contact change notified nobody
            with transaction(plant.session_factory) as s:
                s.execute(update(SupplierItem).values(quoted_lead_time_s=7200))
            wait_until(
                lambda: len(registry_calls) > before + 1,
                DEADLINE_S,
                what="a reload for a supplier item",
            )
    finally:
        plant.close()
