"""Rate-limited logging, so a port spewing garbage cannot flood the log."""

from __future__ import annotations

import logging
import re
import threading
import time

# One line per key at most this often; the suppressed count goes into the next line.
DEFAULT_INTERVAL_S = 30.0
# Keys remembered at most (a flood of distinct sources must not grow memory without end);
# beyond it, keys whose interval has passed are forgotten, and new keys share one.
MAX_KEYS = 10_000
OVERFLOW_KEY = "\x00overflow"
# The values in a message: quoted names and numbers (with sign, fraction, exponent).
_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
# A message kind longer than this is cut (keys stay small).
MAX_KIND_LEN = 200
# A value from outside (a topic, a bad field) longer than this is cut in a log line: a
# 60,000-character topic must not make a 60,000-character line.
MAX_LOGGED_LEN = 200


def clip(text: str, limit: int = MAX_LOGGED_LEN) -> str:
    """`text` cut to `limit` characters for a log line, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def message_kind(message: str) -> str:
    """The message with its values blanked: one key per kind of problem, not per value.

    ``readings[3].grams 1e12 outside 0..2e+06`` and ``readings[0].grams -5.0 outside
    0..2e+06`` are one kind; ``readings[2].stable must be a boolean`` is another, so a
    rate limit keyed by kind never hides a second problem behind a first.
    """
    return _VALUES.sub("#", message)[:MAX_KIND_LEN]


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
            if key not in self._last and len(self._last) >= MAX_KEYS:
                key = self._make_room(now, key)
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

    def _make_room(self, now: float, key: str) -> str:
        """Forget keys whose interval passed; if none did, use the shared overflow key."""
        expired = [k for k, t in self._last.items() if now - t >= self._interval_s]
        for k in expired:
            del self._last[k]
            self._suppressed.pop(k, None)
        return key if len(self._last) < MAX_KEYS else OVERFLOW_KEY
