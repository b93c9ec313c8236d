"""One leader among the nodes: a PostgreSQL session-level advisory lock.

The lock is held on a dedicated connection (never the pool's).  When the leader
dies, PostgreSQL ends its session and the lock is free; another node's next try
(every ``LEADER_TRY_S``) takes it.  A leader that loses its connection steps down
at once (it cannot know whether another node has the lock by now) and tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# The lock's key: "jitstock" in ASCII (one advisory key space per database).
LEADER_LOCK_KEY = 0x6A69_7473_746F_636B
# How often a follower tries for the lock, and a leader checks its connection: the
# longest a cluster runs without a leader after the leader dies.
LEADER_TRY_S = 2.0
# TCP keepalive on the lock connection: a leader cut off from the database notices.
KEEPALIVE = "keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3"


def libpq_url(db_url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq understands it."""
    return (
        make_url(db_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def connect(db_url: str) -> psycopg.Connection[tuple[object, ...]]:
    """A dedicated autocommit connection with TCP keepalive (never the pool's)."""
    info = psycopg.conninfo.make_conninfo(libpq_url(db_url), connect_timeout=5)
    return psycopg.connect(f"{info} {KEEPALIVE}", autocommit=True)


class Leadership:
    """Tries for the lock; runs ``on_elected`` / ``on_deposed`` as it gains or loses it,
    and ``tick`` every ``try_s`` while it leads."""

    def __init__(
        self,
        db_url: str,
        on_elected: Callable[[], None],
        on_deposed: Callable[[], None],
        *,
        tick: Callable[[], None] | None = None,
        try_s: float = LEADER_TRY_S,
        key: int = LEADER_LOCK_KEY,
    ) -> None:
        self._db_url = db_url
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._tick = tick
        self._try_s = try_s
        self._key = key
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leading = threading.Event()

    def start(self) -> None:
        """Start trying for the lock in a background thread."""
        self._thread = threading.Thread(
            target=self._run, name="cluster-leader", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Step down (the lock's connection closes) and stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self._db_url) as conn:
                    try:
                        self._hold(conn)
                    finally:
                        # before the connection (and the lock) goes: no overlap with the next leader
                        self._step_down()
            except psycopg.Error as exc:
                log.warning("leader lock connection: %s", str(exc).strip())
            self._stop.wait(self._try_s)

    def _hold(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Try for the lock until it is ours, then lead until stopped or cut off."""
        while not self._stop.is_set():
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s)", (self._key,)
            ).fetchone()
            if row is not None and row[0]:
                break
            if self._stop.wait(self._try_s):
                return
        else:
            return
        log.info("this node leads the cluster (periodic work runs here)")
        self.leading.set()
        self._on_elected()
        while not self._stop.wait(self._try_s):
            conn.execute("SELECT 1")  # raises when the connection is gone
            if self._tick is not None:
                try:
                    self._tick()
                except Exception:
                    log.exception("leader's periodic work failed")

    def _step_down(self) -> None:
        if self.leading.is_set():
            self.leading.clear()
            log.warning("this node no longer leads the cluster")
            try:
                self._on_deposed()
            except Exception:
                log.exception("stepping down failed")
