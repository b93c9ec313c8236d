"""Disk outbox: every batch is on disk before it is published, gone only after PUBACK.

One SQLite file per agent holds the unacknowledged batches and the next ``seq``
(one sequence space for readings and scans, persisted across restarts).

Durability: WAL with ``synchronous=FULL``.  WAL with ``NORMAL`` survives a
crash of the process but a power cut may roll back the last commits; if a
rolled-back append had already been published and acknowledged, its ``seq``
would be handed out again after the reboot and the server, which applies each
(agent, seq) once, would silently drop the new batch.  ``FULL`` costs one WAL
fsync per commit; appends are at most a few per tick and acknowledgements are
committed in groups, so that is cheap even on an SD card.

Cap policy: when ``depth`` reaches ``max_batches``, the oldest readings batches
are thinned -- of the oldest ``THIN_FRACTION`` of the cap, every second readings
batch is deleted -- so a long outage keeps a coarser but complete-in-time
history, newest data dense.  Each deleted batch is counted in
``stats["thinned_readings_batches"]`` (the server sees it as a ``seq`` gap).
Scans are never dropped: if only scans are left the cap is exceeded and
``stats["over_cap_appends"]`` counts it.

One owner: the outbox takes an exclusive ``flock`` on ``<outbox>.lock`` next to
the file and writes its pid and command line there; a second process on the same
file gets :class:`OutboxLocked` naming the holder (two writers would hand out
the same seqs for different batches, which the server drops as repeats). The
kernel drops the lock when the owner dies, SIGKILL included.

Errors::

    OutboxError          the file cannot be read or written (wraps sqlite3.Error, e.g. disk full)
      OutboxLocked       another process owns this outbox
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jitstock.clock import REAL_CLOCK, Clock

log = logging.getLogger(__name__)

BatchKind = Literal["readings", "scans"]
BatchBuilder = Callable[[int], bytes]

# Default cap: ~5.8 days of one batch per second; a 32-bin batch is ~2.5 KiB, so ~1.2 GiB worst case.
DEFAULT_MAX_BATCHES = 500_000
# Share of the cap (oldest end) examined when thinning: frees about half of it per pass.
THIN_FRACTION = 0.10
# Seconds a connection waits on a lock held by another (e.g. a `sqlite3` shell) before failing.
BUSY_TIMEOUT_S = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('readings', 'scans')),
    payload BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_kind_seq ON batches (kind, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OutboxError(Exception):
    """The outbox file could not be read or written (disk full, corrupt, wrong agent)."""


class OutboxLocked(OutboxError):
    """Another process owns this outbox (its lock file says which)."""


def lock_path(path: Path) -> Path:
    """The lock file that guards the outbox at ``path``."""
    return path.with_name(path.name + ".lock")


def _take_lock(path: Path) -> int:
    """Exclusive, non-blocking flock on the outbox's lock file; its fd (kept open while owned)."""
    lock = lock_path(path)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        finally:
            os.close(fd)
        raise OutboxLocked(
            f"outbox {path} is in use by {holder or 'another process'}; "
            "stop that one first (one agent per outbox)"
        ) from None
    except OSError:
        os.close(fd)
        raise
    me = f"pid {os.getpid()} ({' '.join(sys.argv)[:300]})"
    os.ftruncate(fd, 0)
    os.pwrite(fd, me.encode(), 0)
    return fd


@dataclass(slots=True, frozen=True)
class OutboxItem:
    """One unacknowledged batch, ready to publish."""

    seq: int
    kind: BatchKind
    payload: bytes


class Outbox:
    """Persistent FIFO of batches keyed by ``seq``; thread-safe."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_batches: int = DEFAULT_MAX_BATCHES,
        agent: str | None = None,
        clock: Clock = REAL_CLOCK,
        lock: bool = True,
    ) -> None:
        if max_batches < 1:
            raise ValueError("max_batches must be >= 1")
        self.path = Path(path)
        self.max_batches = max_batches
        self._clock = clock
        self._lock = threading.Lock()
        self._thinned = 0
        self._over_cap = 0
        self._appended = 0
        self._acked = 0
        self._resplit = 0
        self._lock_fd: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if lock:
                self._lock_fd = _take_lock(self.path)
        except OSError as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        try:
            self._db = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_S,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._check_agent(agent)
            self._next_seq = self._load_next_seq()
            (depth,) = self._db.execute("SELECT COUNT(*) FROM batches").fetchone()
        except (sqlite3.Error, OSError) as exc:
            self._unlock()
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        except OutboxError:
            self._unlock()
            raise
        self._depth = int(depth)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the last fd drops the flock
            self._lock_fd = None

    # ------------------------------------------------------------ setup

    def _meta(self, key: str) -> str | None:
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    def _check_agent(self, agent: str | None) -> None:
        if agent is None:
            return
        stored = self._meta("agent")
        if stored is None:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('agent', ?)", (agent,)
            )
        elif stored != agent:
            # Its batches carry the other agent's id and seq space: publishing them would be rejected.
            raise OutboxError(
                f"outbox {self.path} belongs to agent {stored!r}, not {agent!r}; "
                "point outbox_path at a new file"
            )

    def _load_next_seq(self) -> int:
        stored = self._meta("next_seq")
        (max_seq,) = self._db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM batches"
        ).fetchone()
        return max(int(stored or 1), int(max_seq) + 1)

    # ------------------------------------------------------------ writing

    def append(self, kind: BatchKind, build: BatchBuilder) -> int:
        """Give the next seq to ``build``, store its payload durably, return the seq."""
        return self.append_many([(kind, build)])[0]

    def append_many(
        self, batches: Sequence[tuple[BatchKind, BatchBuilder]]
    ) -> list[int]:
        """Append several batches in one transaction (one fsync); return their seqs."""
        if not batches:
            return []
        now = self._clock.time_ms()
        with self._lock:
            seq = self._next_seq
            rows = []
            for kind, build in batches:
                rows.append((seq, kind, build(seq), now))
                seq += 1
            try:
                self._db.execute("BEGIN IMMEDIATE")
                thinned = self._make_room(len(rows))
                self._db.executemany(
                    "INSERT INTO batches (seq, kind, payload, created_ms) VALUES (?, ?, ?, ?)",
                    rows,
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)",
                    (str(seq),),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(
                    f"cannot append to outbox {self.path}: {exc}"
                ) from exc
            self._next_seq = seq
            self._depth += len(rows) - thinned
            self._thinned += thinned
            self._appended += len(rows)
            return [r[0] for r in rows]

    def _make_room(self, incoming: int) -> int:
        """Thin the oldest readings batches when the cap would be passed; return how many went."""
        if self._depth + incoming <= self.max_batches:
            return 0
        span = max(2, int(self.max_batches * THIN_FRACTION))
        oldest = [
            seq
            for (seq,) in self._db.execute(
                "SELECT seq FROM batches WHERE kind = 'readings' ORDER BY seq LIMIT ?",
                (span,),
            )
        ]
        victims = oldest[1::2] or oldest[:1]
        if not victims:
            self._over_cap += incoming
            log.warning(
                "outbox %s is full of scans (%d); scans are never dropped, cap exceeded",
                self.path,
                self._depth,
            )
            return 0
        self._db.executemany(
            "DELETE FROM batches WHERE seq = ?", [(s,) for s in victims]
        )
        log.warning(
            "outbox %s full (%d batches): thinned %d oldest readings batches (seq %d..%d)",
            self.path,
            self._depth,
            len(victims),
            victims[0],
            victims[-1],
        )
        return len(victims)

    def replace_batch(
        self, seq: int, kind: BatchKind, builders: Sequence[BatchBuilder]
    ) -> list[int]:
        """Swap the stored batch ``seq`` for new batches at the end of the sequence (one transaction).

        For a batch the broker cannot take (larger than its packet limit): its items go
        out again, split, under new seqs; ``seq`` itself becomes a gap. Returns the new seqs.
        """
        now = self._clock.time_ms()
        with self._lock:
            first = self._next_seq
            rows = [
                (first + i, kind, b(first + i), now) for i, b in enumerate(builders)
            ]
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
                self._db.executemany(
                    "INSERT INTO batches (seq, kind, payload, created_ms) VALUES (?, ?, ?, ?)",
                    rows,
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)",
                    (str(first + len(rows)),),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(
                    f"cannot re-split batch {seq} in outbox {self.path}: {exc}"
                ) from exc
            self._next_seq = first + len(rows)
            self._depth += len(rows) - cur.rowcount
            self._appended += len(rows)
            self._resplit += 1
            return [r[0] for r in rows]

    def recall(self, key: str) -> str | None:
        """A value the agent remembered across restarts (e.g. the broker's packet limit)."""
        with self._lock:
            try:
                return self._meta(f"agent.{key}")
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read outbox {self.path}: {exc}") from exc

    def remember(self, key: str, value: str) -> None:
        """Store a small value across restarts."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (f"agent.{key}", value),
                )
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot write outbox {self.path}: {exc}") from exc

    def ack(self, seq: int) -> None:
        """Forget a batch the broker acknowledged."""
        self.ack_many((seq,))

    def ack_many(self, seqs: Iterable[int]) -> None:
        """Forget several acknowledged batches in one transaction."""
        params = [(s,) for s in seqs]
        if not params:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.executemany("DELETE FROM batches WHERE seq = ?", params)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"cannot ack in outbox {self.path}: {exc}") from exc
            # rowcount: a batch thinned while in flight was already gone
            self._depth -= cur.rowcount
            self._acked += cur.rowcount

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction was open

    # ------------------------------------------------------------ reading

    def pending(self, after_seq: int = 0, limit: int = 1000) -> list[OutboxItem]:
        """Unacknowledged batches with seq > ``after_seq``, oldest first."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT seq, kind, payload FROM batches WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read outbox {self.path}: {exc}") from exc
        return [OutboxItem(int(s), k, bytes(p)) for s, k, p in rows]

    @property
    def depth(self) -> int:
        """Batches waiting for a PUBACK."""
        return self._depth

    @property
    def last_seq(self) -> int:
        """Highest seq handed out so far (0 before the first append)."""
        return self._next_seq - 1

    @property
    def stats(self) -> dict[str, int]:
        """Counters for logs and metrics."""
        return {
            "depth": self._depth,
            "last_seq": self._next_seq - 1,
            "appended": self._appended,
            "acked": self._acked,
            "thinned_readings_batches": self._thinned,
            "over_cap_appends": self._over_cap,
            "resplit_batches": self._resplit,
        }

    def close(self) -> None:
        """Checkpoint and close the file."""
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another reader holds the WAL; the next open checkpoints
            self._db.close()
            self._unlock()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
