"""Password sign-in throttling: per user name and per client address, with exponential back-off.

Every attempt is counted as a failure *before* the password is checked (so a
burst of parallel requests cannot all slip through while the first ones are
still inside scrypt), and a correct password takes the count back.  Once a
name or an address has ``free_failures`` failures, it is locked for
``base_s · 2^(failures − free_failures)`` seconds, capped at ``cap_s``; a
locked caller is refused at once, before any scrypt work.  Failures are
forgotten ``memory_s`` after the last one.

State lives in memory (one server process per plant): a restart forgets it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from jitstock.clock import REAL_CLOCK, Clock

# A person mistyping gets this many tries per name before the first lock.
USER_FREE_FAILURES = 5
# A shared shop-floor tablet (or a NAT) is many people: more tries per address.
ADDRESS_FREE_FAILURES = 20
# First lock; doubles with each further failure: a guesser gets ~log2(time) tries.
BACKOFF_BASE_S = 15.0
# Longest lock: a locked-out colleague waits at most a quarter of an hour.
BACKOFF_CAP_S = 900.0
# Failures are forgotten this long after the last one; longer than the cap, so a
# guesser who waits out the cap still meets it again after one more failure.
FAILURE_MEMORY_S = 3600.0
# Bound on remembered names and addresses (random names must not grow memory without limit).
MAX_ENTRIES = 50_000


@dataclass(slots=True)
class _Entry:
    failures: int = 0
    last_s: float = 0.0
    locked_until_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """An admitted attempt: the keys it was counted under, to settle once the password is checked."""

    keys: tuple[tuple[str, str], ...]


class Throttled(Exception):
    """The caller must wait ``retry_after_s`` seconds before trying again."""

    def __init__(self, retry_after_s: float, scope: str) -> None:
        super().__init__(f"too many failed sign-ins for this {scope}")
        self.retry_after_s = retry_after_s
        self.scope = scope

    @property
    def retry_after_header(self) -> str:
        """Whole seconds for the Retry-After header (never 0: 0 invites a busy loop)."""
        return str(max(1, math.ceil(self.retry_after_s)))


class SignInThrottle:
    """Counts failed sign-ins per user name and per address and locks with back-off."""

    def __init__(
        self,
        *,
        clock: Clock = REAL_CLOCK,
        user_free_failures: int = USER_FREE_FAILURES,
        address_free_failures: int = ADDRESS_FREE_FAILURES,
        base_s: float = BACKOFF_BASE_S,
        cap_s: float = BACKOFF_CAP_S,
        memory_s: float = FAILURE_MEMORY_S,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._clock = clock
        self._free = {"user": user_free_failures, "address": address_free_failures}
        self._base_s = base_s
        self._cap_s = cap_s
        self._memory_s = memory_s
        self._max_entries = max_entries
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def begin(self, username: str, address: str | None) -> Attempt:
        """Admit an attempt (counted as a failure until :meth:`succeeded`), or raise Throttled."""
        keys = [("user", username.casefold())]
        if address:
            keys.append(("address", address))
        now = self._clock.monotonic()
        with self._lock:
            for key in keys:
                entry = self._live(key, now)
                if entry is not None and entry.locked_until_s > now:
                    raise Throttled(entry.locked_until_s - now, key[0])
            for key in keys:
                self._fail(key, now)
        return Attempt(tuple(keys))

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the name starts afresh, the address gets its try back."""
        now = self._clock.monotonic()
        with self._lock:
            for key in attempt.keys:
                entry = self._entries.get(key)
                if entry is None:
                    continue
                if key[0] == "user":
                    del self._entries[key]
                    continue
                entry.failures = max(0, entry.failures - 1)
                if entry.failures < self._free[key[0]]:
                    entry.locked_until_s = 0.0
                elif entry.locked_until_s > now:
                    entry.locked_until_s = now + self._lock_s(key[0], entry.failures)

    def retry_after(self, username: str, address: str | None = None) -> float:
        """Seconds until this name (and address) may try again; 0 when it may now."""
        now = self._clock.monotonic()
        keys = [("user", username.casefold())] + (
            [("address", address)] if address else []
        )
        with self._lock:
            waits = [
                e.locked_until_s - now
                for k in keys
                if (e := self._live(k, now)) is not None
            ]
        return max([0.0, *waits])

    def forget_user(self, username: str) -> None:
        """Clear a name's failures (an admin set a new password)."""
        with self._lock:
            self._entries.pop(("user", username.casefold()), None)

    def _live(self, key: tuple[str, str], now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry.last_s > self._memory_s:
            del self._entries[key]
            return None
        return entry

    def _fail(self, key: tuple[str, str], now: float) -> None:
        entry = self._live(key, now)
        if entry is None:
            if len(self._entries) >= self._max_entries:
                self._evict(now)
            entry = self._entries[key] = _Entry()
        entry.failures += 1
        entry.last_s = now
        if entry.failures >= self._free[key[0]]:
            entry.locked_until_s = now + self._lock_s(key[0], entry.failures)

    def _lock_s(self, scope: str, failures: int) -> float:
        over = failures - self._free[scope]
        # 2**over overflows float for absurd counts; the cap is reached long before
        return self._cap_s if over >= 32 else min(self._cap_s, self._base_s * 2**over)

    def _evict(self, now: float) -> None:
        """Drop forgotten entries, then the oldest (unlocked before locked), down to 90 %."""
        for key in [
            k for k, e in self._entries.items() if now - e.last_s > self._memory_s
        ]:
            del self._entries[key]
        excess = len(self._entries) - int(self._max_entries * 0.9)
        if excess <= 0:
            return
        # unlocked ones first; locked ones only if a flood of names leaves nothing else
        order = sorted(
            (e.locked_until_s > now, e.last_s, k) for k, e in self._entries.items()
        )
        for _locked, _last, key in order[:excess]:
            del self._entries[key]
