"""Changes reach every node at once: PostgreSQL LISTEN/NOTIFY.

Triggers (migrations 0014 and 0015) notify ``jitstock_changes`` with the table's name
when bins, SKUs or agents change what the bin registry holds, when suppliers, supplier
items, sites or SKU names change what an order's claim reads (the catalogue cache), and
when an order is created or changes state.  Each node listens on a dedicated connection: a registry change reloads
the registry, an order change wakes the dispatcher.  The periodic reload stays as the
safety net for notifications missed while this connection was down (it reloads once
more on every reconnect for the same reason).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from jitstock.server.cluster.leader import connect

log = logging.getLogger(__name__)

CHANNEL = "jitstock_changes"
# a registry reload also ends the catalogue cache's generation (migration 0015's
# suppliers, supplier items and sites: what an order's claim and body read)
REGISTRY_TABLES = frozenset(
    {"bins", "skus", "agents", "suppliers", "supplier_items", "sites"}
)
# A stop is noticed within this long (a notification is acted on when it arrives).
LISTEN_POLL_S = 0.5
# After a lost connection, listen again after this long.
RELISTEN_S = 2.0


class ChangeListener:
    """LISTENs on its own connection and calls ``on_registry`` / ``on_orders``."""

    def __init__(
        self,
        db_url: str,
        on_registry: Callable[[], None],
        on_orders: Callable[[], None],
    ) -> None:
        self._db_url = db_url
        self._on_registry = on_registry
        self._on_orders = on_orders
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()
        self.received = 0

    def start(self) -> None:
        """Listen in a background thread."""
        self._thread = threading.Thread(
            target=self._run, name="cluster-changes", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self._db_url) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self._call(self._on_registry)  # what changed while we were away
                    while not self._stop.is_set():
                        # react on the first notification, with those already
                        # there (a burst of changes costs one reload, not one each)
                        got = list(conn.notifies(timeout=LISTEN_POLL_S, stop_after=1))
                        if got:
                            got += conn.notifies(timeout=0, stop_after=1000)
                        self.received += len(got)
                        tables = {n.payload for n in got}
                        if tables & REGISTRY_TABLES:
                            self._call(self._on_registry)
                        if "orders" in tables:
                            self._call(self._on_orders)
            except psycopg.Error as exc:
                log.warning("change listener connection: %s", str(exc).strip())
            finally:
                self.listening.clear()
            self._stop.wait(RELISTEN_S)

    @staticmethod
    def _call(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("reacting to a change failed")
