"""One order's webhook events are stamped in the order they happened, as the README
tells a supplier to order them ("order one order's deliveries by ``timestamp_ms``").

Found from the outside: twelve promise changes sent together (a supplier's ERP
re-planning) all answered 200 and the last one committed set the promise, but the
events' ``timestamp_ms`` was the time each request started, read before it waited for
the database's write lock. Sorted by it, the supplier's latest promise was another
one than the plant's, and four events shared one millisecond."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jitstock.clock import REAL_CLOCK
from tests.server.server_support import wait_until
from tests.server.supplier.conftest import events_of, supplier_loop

HOUR_MS = 3_600_000


class SteppedClock:
    """The real clock, minus ``back_ms``: a wall clock stepped back (NTP), or a request
    that read the time before an earlier one committed."""

    def __init__(self) -> None:
        self.back_ms = 0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return REAL_CLOCK.monotonic()

    def time_ms(self) -> int:
        with self._lock:
            return REAL_CLOCK.time_ms() - self.back_ms

    def sleep(self, seconds: float) -> None:
        REAL_CLOCK.sleep(seconds)


def test_promise_changes_sent_together_are_stamped_in_commit_order(
    tmp_path: Path, mosquitto
) -> None:
    clock = SteppedClock()
    with supplier_loop(tmp_path, mosquitto.url, clock=clock) as loop:
        oid, a, first = loop.acknowledged_order("A", HOUR_MS)

        def change(i: int) -> int:
            r = a.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": first + i})
            return r.status_code

        # the supplier's ERP re-plans: ten promise changes at once
        with ThreadPoolExecutor(10) as pool:
            assert list(pool.map(change, range(1, 11))) == [200] * 10
        # one more, from a request that read the clock 10 s before the others committed
        clock.back_ms = 10_000
        try:
            last = first + 100
            r = a.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": last})
            assert (r.status_code, r.json()["promised_ms"]) == (200, last), r.text
        finally:
            clock.back_ms = 0
        assert loop.order(oid)["promised_ms"] == last

        def changes() -> list[dict[str, Any]]:
            got = [e for e in events_of(loop.a) if e["data"]["order"]["id"] == oid]
            return got if len(got) == 12 else []

        events = wait_until(changes, what="the acknowledgement and 11 promise changes")
        (created,) = [
            p
            for r in loop.a.received
            if isinstance(p := r.payload, dict) and p.get("type") == "order.created"
        ]
        # the order the plant committed them in: each names the promise it replaced
        by_previous = {
            e["data"]["previous_promised_ms"]: e
            for e in events
            if e["type"] == "order.promise_changed"
        }
        (ack,) = [e for e in events if e["type"] == "order.acknowledged"]
        chain = [ack]
        while chain[-1]["data"]["order"]["promised_ms"] in by_previous:
            chain.append(by_previous.pop(chain[-1]["data"]["order"]["promised_ms"]))
        assert len(chain) == 12
        assert not by_previous
        stamps = [created["timestamp_ms"]] + [e["timestamp_ms"] for e in chain]
        assert stamps == sorted(stamps), stamps
        assert len(set(stamps)) == len(stamps), stamps
        # a supplier that orders by timestamp_ms, as documented, holds the plant's promise
        newest = max(events, key=lambda e: e["timestamp_ms"])
        assert newest["data"]["order"]["promised_ms"] == last
