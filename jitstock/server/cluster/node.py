"""What makes a `jitstock server` process one node of a cluster (docs/cluster.md).

- ingest takes readings and scans from MQTT 5 shared subscriptions
  (``$share/<group>/…``): the broker gives each batch to one node of the group;
  status messages (retained, which shared subscriptions do not deliver) go to every node;
- each node has its own MQTT client id and persistent session (``<client id>-<node>``);
- periodic work that must run once (policy recalculation, alert passes, escalation,
  supplier events, the low-water mark pruning) runs on the leader only;
- changes to bins and orders reach every node through LISTEN/NOTIFY.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg
from sqlalchemy import Engine

from jitstock.clock import Clock
from jitstock.server.cluster.changes import ChangeListener
from jitstock.server.cluster.leader import Leadership, connect
from jitstock.server.cluster.prune import prune
from jitstock.server.db.session import normalise_url
from jitstock.server.settings import ServerSettings, SettingRefused

log = logging.getLogger(__name__)


class Part(Protocol):
    """A background part with a restartable thread."""

    def start(self) -> None:
        """Start its thread."""

    def stop(self) -> None:
        """Stop its thread."""


def check_settings(settings: ServerSettings) -> None:
    """Refuse a cluster set-up that cannot work (SettingRefused)."""
    if not settings.cluster:
        return
    if not normalise_url(settings.db_url).startswith("postgresql"):
        raise SettingRefused(
            "JITSTOCK_CLUSTER=true needs PostgreSQL (JITSTOCK_DB_URL=postgresql://…): "
            "the nodes share their state there"
        )
    if settings.cluster_node is None:
        raise SettingRefused(
            "JITSTOCK_CLUSTER=true needs JITSTOCK_CLUSTER_NODE: a name per node "
            "([A-Za-z0-9_-], unique in the cluster; it names its MQTT session)"
        )
    if settings.mqtt_protocol != "5":
        raise SettingRefused(
            "JITSTOCK_CLUSTER=true needs JITSTOCK_MQTT_PROTOCOL=5 (shared subscriptions "
            "with per-node sessions and Receive Maximum)"
        )
    if not settings.influx_url:
        raise SettingRefused(
            "JITSTOCK_CLUSTER=true needs JITSTOCK_INFLUX_URL: the embedded history "
            "store is one node's file, the nodes must share one InfluxDB"
        )


def node_lock_key(name: str) -> int:
    """The advisory lock key of a node name (64 bits of its hash, signed)."""
    digest = hashlib.blake2b(f"jitstock-node:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def claim_node_name(settings: ServerSettings) -> psycopg.Connection[Any]:
    """Hold this node's name (a session advisory lock on a dedicated connection) for the
    process's life; SettingRefused when another running node holds it.

    Two nodes with one name share one MQTT client id: the broker would disconnect each
    when the other connects, every second, logging only "Unspecified error".
    """
    conn = connect(settings.db_url)
    got = conn.execute(
        "SELECT pg_try_advisory_lock(%s)", (node_lock_key(str(settings.cluster_node)),)
    ).fetchone()
    if got is None or not got[0]:
        conn.close()
        raise SettingRefused(
            f"another node is running as JITSTOCK_CLUSTER_NODE={settings.cluster_node} "
            "on this database: each node needs its own name (it names its MQTT session)"
        )
    return conn


def client_id(settings: ServerSettings) -> str:
    """The node's MQTT client id: one persistent session per node."""
    if settings.cluster and settings.cluster_node:
        return f"{settings.mqtt_client_id}-{settings.cluster_node}"
    return settings.mqtt_client_id


def subscriptions(settings: ServerSettings, plain: Sequence[str]) -> list[str]:
    """Readings and scans through the group's shared subscription; the rest plain."""
    if not settings.cluster:
        return list(plain)
    return [
        f"$share/{settings.cluster_group}/{t}"
        if t.endswith(("/readings", "/scans"))
        else t
        for t in plain
    ]


class ClusterNode:
    """Leadership (with the leader-only parts) and the change listener of one node."""

    def __init__(
        self,
        settings: ServerSettings,
        engine: Engine,
        *,
        leader_parts: Sequence[Part],
        reload_registry: Callable[[], None],
        wake_dispatcher: Callable[[], None],
        clock: Clock,
    ) -> None:
        self._parts = list(leader_parts)
        self._engine = engine
        self._clock = clock
        self._gap_wait_ms = int(settings.cluster_gap_wait_s * 1000)
        self.leadership = Leadership(
            settings.db_url,
            self._elected,
            self._deposed,
            tick=self._prune,
        )
        self.changes = ChangeListener(settings.db_url, reload_registry, wake_dispatcher)

    def start(self) -> None:
        """Listen for changes and try for leadership."""
        self.changes.start()
        self.leadership.start()

    def stop(self) -> None:
        """Step down and stop listening."""
        self.leadership.stop()
        self.changes.stop()

    def _elected(self) -> None:
        for part in self._parts:
            part.start()

    def _deposed(self) -> None:
        for part in reversed(self._parts):
            part.stop()

    def _prune(self) -> None:
        prune(self._engine, self._clock.time_ms(), self._gap_wait_ms)
