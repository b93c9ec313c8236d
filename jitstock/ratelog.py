"""Rate-limited logging, so a port spewing garbage cannot flood the log."""

from __future__ import annotations

import logging
import threading
import time

# One line per key at most this often; the suppressed count goes into the next line.
DEFAULT_INTERVAL_S = 30.0


class RateLimitedLog:
    """Logs at most one message per key per interval, counting what it suppressed."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = DEFAULT_INTERVAL_S
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        """Log `msg % args` under `key` unless that key logged within the interval."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d similar suppressed)"
            args = (*args, suppressed)
        self._logger.log(level, msg, *args)
