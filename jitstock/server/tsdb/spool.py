"""A durable FIFO of line protocol bodies for while InfluxDB is away (SQLite, WAL).

Each row is one body (newline-terminated lines) with its point count and the wall
time it was spooled.  Rows leave only after InfluxDB accepted them, so a crash
between sending and deleting replays them once more — harmless, because points
with the same series and timestamp merge in InfluxDB.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server.private_files import ensure_private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms INTEGER NOT NULL,
    points INTEGER NOT NULL,
    body BLOB NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    """One spooled request body."""

    id: int
    points: int
    body: bytes


class Spool:
    """FIFO of line protocol bodies in a SQLite file; thread-safe; counts kept in memory."""

    def __init__(
        self, path: str | Path, clock: Clock = REAL_CLOCK, synchronous: str = "NORMAL"
    ) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(
                f"synchronous must be OFF/NORMAL/FULL/EXTRA, not {synchronous!r}"
            )
        self._clock = clock
        self._lock = threading.Lock()
        ensure_private_file(path)
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; FULL also survives power loss, at an fsync per write
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute(_SCHEMA)
        count, points, oldest = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(points), 0), MIN(created_ms) FROM spool"
        ).fetchone()
        self._batches: int = count
        self._points: int = points
        self._oldest_ms: int | None = oldest

    @property
    def points(self) -> int:
        """Points waiting."""
        return self._points

    @property
    def batches(self) -> int:
        """Bodies waiting."""
        return self._batches

    def oldest_age_s(self) -> float:
        """Seconds since the oldest waiting body was spooled (0 when empty)."""
        oldest = self._oldest_ms
        if oldest is None:
            return 0.0
        return max(0.0, (self._clock.time_ms() - oldest) / 1000.0)

    def append(self, bodies: Sequence[tuple[bytes, int]]) -> None:
        """Add (body, points) pairs at the tail in one transaction; durable on return."""
        if not bodies:
            return
        now = self._clock.time_ms()
        with self._lock:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO spool (created_ms, points, body) VALUES (?, ?, ?)",
                    [(now, n, body) for body, n in bodies],
                )
            self._batches += len(bodies)
            self._points += sum(n for _, n in bodies)
            if self._oldest_ms is None:
                self._oldest_ms = now

    def head(self, max_points: int) -> list[SpoolBatch]:
        """The oldest bodies, together at most max_points (but always at least one when not empty)."""
        out: list[SpoolBatch] = []
        total = 0
        with self._lock:
            cur = self._db.execute(
                "SELECT id, points, body FROM spool ORDER BY id LIMIT 1000"
            )
            for row_id, points, body in cur:
                if out and total + points > max_points:
                    break
                out.append(SpoolBatch(row_id, points, body))
                total += points
            cur.close()
        return out

    def remove(self, batches: Sequence[SpoolBatch]) -> None:
        """Delete bodies taken from head() once the backend has them."""
        if not batches:
            return
        with self._lock:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "DELETE FROM spool WHERE id = ?", [(b.id,) for b in batches]
                )
            self._batches -= len(batches)
            self._points -= sum(b.points for b in batches)
            row = self._db.execute("SELECT MIN(created_ms) FROM spool").fetchone()
            self._oldest_ms = row[0]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
