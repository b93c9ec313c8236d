"""`jitstock demo` watched through its API: the reorder loop keeps a position the line can trust.

The demo runs as a subprocess (simulated time in the demo is real time at high
demand rates and lead times of seconds, so two minutes hold dozens of order
cycles).  Every ``POLL_S`` the test reads the levels, the orders and the open
alerts, and the demo's own DELIVERY lines (when the truck unloaded), and
checks what issue 9 promises:

- no bin runs empty while one of its orders is stuck (open past its promise
  and grace with no alert about it) or while its position counts phantom
  stock (an order the supplier already delivered, still on order; units
  pending put-away that never arrive);
- no order is overdue past its promise and grace without an open alert;
- the reliable demo supplier's on-time rate on the KPI endpoint is above 80 %,
  the unreliable one's (a quarter of its orders late by design) above 50 %.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from jitstock.server.db.models import OPEN_ORDER_STATES
from jitstock.server.on_time import tolerance_ms
from tests.demo_support import START_DEADLINE_S, start_demo, stop_demo, wait_up
from tests.services import free_port

log = logging.getLogger(__name__)

# Watched demo time: about 40 orders, each demo supplier completes ten or more.
OBSERVE_S = 120.0
POLL_S = 2.0
# After the truck unloads: the scale settles, the edge's stability window passes, the
# server matches the refill; long after that an open order is stuck, its quantity phantom.
PUTAWAY_MS = 30_000
# The alert monitor's full pass (JITSTOCK_ALERT_CHECK_S) plus one poll.
ALERT_LAG_MS = 15_000 + int(POLL_S * 1000)
# Least on-time rate per demo supplier: acme is late one order in twenty, borg one in four.
SUPPLIERS = {"acme": 0.8, "borg": 0.5}
DELIVERY_RE = re.compile(r"DELIVERY +(\w{8}) +bin (\S+)")


def _grace_ms(order: dict[str, Any]) -> int:
    """How long past its promise an order may be open before an alert must say so."""
    promised = order["promised_ms"]
    start = order["sent_ms"] or order["created_ms"]
    return tolerance_ms(promised, start) + ALERT_LAG_MS


@dataclass
class Watch:
    """What the polls saw."""

    delivered_at: dict[str, float] = field(default_factory=dict)  # order id[:8] -> ms
    pending_since: dict[str, float] = field(default_factory=dict)  # bin -> ms
    overdue_unalerted: dict[str, str] = field(default_factory=dict)
    stuck_delivered: dict[str, str] = field(default_factory=dict)
    stockouts: list[tuple[str, float]] = field(default_factory=list)
    bad_stockouts: list[str] = field(default_factory=list)
    polls: int = 0
    out_pos: int = 0

    def read_deliveries(self, out_file: Path, now_ms: float) -> None:
        text = out_file.read_text(errors="replace")
        for m in DELIVERY_RE.finditer(text, self.out_pos):
            self.delivered_at.setdefault(m.group(1), now_ms)
        # leave a partial last line for the next read
        self.out_pos = text.rfind("\n") + 1

    def check(
        self,
        now_ms: float,
        levels: list[dict[str, Any]],
        orders: list[dict[str, Any]],
        alerts: list[dict[str, Any]],
    ) -> None:
        self.polls += 1
        alerted = {a["order_id"] for a in alerts if a.get("order_id")}
        stuck: dict[str, list[str]] = {}
        for o in orders:
            if o["state"] not in OPEN_ORDER_STATES:
                continue
            why = None
            if (
                o["promised_ms"] is not None
                and now_ms > o["promised_ms"] + _grace_ms(o)
                and o["id"] not in alerted
            ):
                why = (
                    f"order {o['id'][:8]} ({o['bin_id']}, {o['supplier_id']}) "
                    f"{o['state']} {(now_ms - o['promised_ms']) / 1000:.0f} s past its "
                    "promise, no open alert"
                )
                self.overdue_unalerted.setdefault(o["id"], why)
            delivered = self.delivered_at.get(o["id"][:8])
            if delivered is not None and now_ms > delivered + PUTAWAY_MS:
                why = (
                    f"order {o['id'][:8]} ({o['bin_id']}) still {o['state']} "
                    f"{(now_ms - delivered) / 1000:.0f} s after its goods went into the bin"
                )
                self.stuck_delivered.setdefault(o["id"], why)
            if why is not None:
                stuck.setdefault(o["bin_id"], []).append(why)
        for lv in levels:
            b = lv["bin_id"]
            if lv["pending_delivery_qty"] > 0:
                self.pending_since.setdefault(b, now_ms)
            else:
                self.pending_since.pop(b, None)
            if lv["on_hand"] > 0 or lv["last_seen_ms"] is None:
                continue  # stocked, or no reading from its scale yet
            self.stockouts.append((b, now_ms))
            causes = list(stuck.get(b, []))
            since = self.pending_since.get(b)
            if since is not None and now_ms > since + PUTAWAY_MS:
                causes.append(
                    f"{lv['pending_delivery_qty']} units pending put-away for "
                    f"{(now_ms - since) / 1000:.0f} s (the demo has no dock receipts)"
                )
            if causes:
                self.bad_stockouts.append(
                    f"{b} at 0 (position {lv['position']}, on order {lv['on_order_qty']}): "
                    + "; ".join(causes)
                )


@pytest.mark.slow
@pytest.mark.timeout(START_DEADLINE_S + OBSERVE_S + 180)
def test_demo_reorder_loop_keeps_bins_supplied(tmp_path: Path) -> None:
    port = free_port()
    # the duration is a backstop only: the test stops the demo with SIGTERM
    proc = start_demo(tmp_path, port, START_DEADLINE_S + OBSERVE_S + 120)
    out_file = tmp_path / "demo.out"
    err_file = tmp_path / "demo.err"
    watch = Watch()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as api:
            wait_up(api, proc, err_file)
            end = time.monotonic() + OBSERVE_S
            while time.monotonic() < end:
                assert proc.poll() is None, err_file.read_text()[-3000:]
                now_ms = time.time() * 1000
                watch.read_deliveries(out_file, now_ms)
                levels = api.get("/api/v1/levels").raise_for_status().json()
                orders = (
                    api.get("/api/v1/orders", params={"limit": 1000})
                    .raise_for_status()
                    .json()
                )
                alerts = api.get("/api/v1/alerts").raise_for_status().json()
                watch.check(time.time() * 1000, levels, orders, alerts)
                time.sleep(POLL_S)
            kpis = api.get("/api/v1/kpis").raise_for_status().json()
    finally:
        stop_demo(proc)
    stdout = out_file.read_text(errors="replace")
    stderr = err_file.read_text(errors="replace")
    suppliers = {row["supplier"]: row for row in kpis["suppliers"]}
    total = next(a for a in kpis["areas"] if a["area"] == "all")
    log.info(
        "demo loop: %d polls, %d orders, %d deliveries, on time %s, KPI stockouts %s "
        "(%s bin-min), stockouts seen %d, overdue without alert %d, "
        "open after delivery %d",
        watch.polls,
        len(orders),
        len(watch.delivered_at),
        {s: (r["on_time_rate"], r["completed"]) for s, r in suppliers.items()},
        total["stockout_events"],
        total["stockout_minutes"],
        len({b for b, _ in watch.stockouts}),
        len(watch.overdue_unalerted),
        len(watch.stuck_delivered),
    )

    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert watch.polls >= OBSERVE_S / (POLL_S * 4), "the API answered too slowly"
    assert not watch.bad_stockouts, "\n".join(watch.bad_stockouts)
    assert not watch.overdue_unalerted, "\n".join(watch.overdue_unalerted.values())
    for sup, least in SUPPLIERS.items():
        row = suppliers.get(sup)
        assert row is not None, (sup, stdout[-2000:])
        assert row["completed"] >= 5, (sup, row, stdout[-2000:])
        assert row["on_time_rate"] > least, (sup, row)
