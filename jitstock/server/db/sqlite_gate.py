"""One writer at a time per SQLite file inside this process, queued on a lock that wakes
the next writer the moment the last one commits.

SQLite lets one connection write at a time, and a ``BEGIN IMMEDIATE`` that finds the
write lock taken waits in SQLite's busy handler, which polls: it sleeps 1, 2, 5, 10, 15,
20, 25, 25, 25, 50, 50, then 100 ms between tries, however soon the lock is free.  In
the server, ingest's flushes, the dispatcher's claims and records, alerts, the API and
the replenishment run are all writers of one file.  Measured at 150,000 readings/s,
flushes that took 17-20 ms went to 80-100 ms and more for seconds at a time while the
crossings' orders were claimed and sent.  That is the busy handler's sleeps.

Here every writing transaction of the process first takes the file's lock.  It takes
it in the engine's ``begin`` event, before ``BEGIN IMMEDIATE``.  It gives the lock back
once SQLite has committed or rolled back: in the connection's own ``commit()`` and
``rollback()``, with a check-in to the pool as the backstop.  So writers inside the
process never meet SQLite's busy handler.  Other processes (``jitstock admin``, a
second server on the same file) still meet it, as before.  The lock waits at most the
busy timeout, then fails the way SQLite would: "database is locked", an
OperationalError, which ingest retries as transient.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from sqlalchemy.exc import OperationalError

# conn.info key: the lock this connection holds for its open writing transaction
_HELD = "jitstock_sqlite_gate"

_gates: dict[str, threading.Lock] = {}
_gates_lock = threading.Lock()


def gate_for(database: str) -> threading.Lock:
    """The process's write lock for one SQLite file (by its absolute path)."""
    key = os.path.realpath(database)
    with _gates_lock:
        return _gates.setdefault(key, threading.Lock())


def take(gate: threading.Lock, info: dict[Any, Any], wait_s: float) -> None:
    """Take the write lock for a transaction about to begin (info: the connection's)."""
    if info.get(_HELD) is not None:
        return  # this connection already holds it (a BEGIN retried on it)
    if not gate.acquire(timeout=wait_s):
        raise OperationalError(
            "BEGIN IMMEDIATE",
            None,
            sqlite3.OperationalError(
                f"database is locked (no write lock within {wait_s:g} s in this process)"
            ),
        )
    info[_HELD] = gate


def give_back(info: dict[Any, Any]) -> None:
    """Release the write lock this connection holds, if it holds it."""
    gate = info.pop(_HELD, None)
    if gate is not None:
        gate.release()


class GatedConnection(sqlite3.Connection):
    """A pysqlite connection that gives the write lock back after COMMIT or ROLLBACK.

    ``gate_info`` is set by the engine's connect event to the connection record's info,
    the dict the engine's ``begin`` event sees as ``conn.info``.
    """

    gate_info: dict[Any, Any] | None = None

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:  # a failed COMMIT leaves it open: keep the lock
                self._give_back()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._give_back()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._give_back()

    def _give_back(self) -> None:
        if self.gate_info is not None:
            give_back(self.gate_info)
