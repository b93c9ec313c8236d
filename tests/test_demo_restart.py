"""`jitstock demo` restarted over its data dir within seconds (issue 14).

The second run must keep the port (the first one's connections are still in
TIME_WAIT), and must not open alerts for what happened while it was down: no
``unexplained_stock_increase`` (the simulated scales resume at the last
recorded counts), no agent going offline (the demo stops its server before its
agents), and no order of the first run overdue or unacknowledged (its supplier
re-promises it).  Deadlines are bounds against hanging, not speed targets.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from tests.demo_support import START_DEADLINE_S, start_demo, stop_demo, wait_up
from tests.services import free_port

# First run: long enough for orders in every state; second: for the alert monitor's
# passes and a lead time of the slower supplier to run out.
FIRST_RUN_S = 30.0
WATCH_S = 60.0
RESTART_ALERTS = ("unexplained_stock_increase", "agent_offline")
ORDER_ALERTS = ("order_overdue", "order_unacknowledged")


@pytest.mark.slow
@pytest.mark.timeout(2 * START_DEADLINE_S + FIRST_RUN_S + WATCH_S + 120)
def test_demo_restart_keeps_port_and_raises_no_alerts(tmp_path: Path) -> None:
    port = free_port()
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0)
    first = start_demo(tmp_path, port, START_DEADLINE_S + WATCH_S + 60, "first")
    try:
        wait_up(api, first, tmp_path / "first.err")
        time.sleep(FIRST_RUN_S)
        api.get("/api/v1/floor").raise_for_status()  # a dashboard tab was open
        before = {
            o["id"]
            for o in api.get("/api/v1/orders", params={"limit": 200}).json()
            if o["created_ms"] > (time.time() - 3600) * 1000
        }
    finally:
        stop_demo(first)
    assert first.returncode == 0, (tmp_path / "first.err").read_text()[-3000:]

    restart_ms = time.time() * 1000
    second = start_demo(tmp_path, port, START_DEADLINE_S + WATCH_S + 60, "second")
    try:
        wait_up(api, second, tmp_path / "second.err")
        time.sleep(WATCH_S)
        alerts = api.get("/api/v1/alerts", params={"state": "all"}).json()
    finally:
        stop_demo(second)
        api.close()
    out = (tmp_path / "second.out").read_text()
    err = (tmp_path / "second.err").read_text()
    assert second.returncode == 0, err[-3000:]
    assert f"http://127.0.0.1:{port}/" in out, out[:500]
    assert re.search(r"resumed: .* (\d+) open orders re-promised", out), out[:800]
    since = [a for a in alerts if a["opened_ms"] >= restart_ms]
    bad = [a for a in since if a["kind"] in RESTART_ALERTS] + [
        a for a in since if a["kind"] in ORDER_ALERTS and a.get("order_id") in before
    ]
    assert not bad, [(a["kind"], a.get("bin_id"), a.get("message")) for a in bad]
    # the console carries the demo's own lines only; log records went to demo.log
    assert "Traceback" not in err, err[-3000:]
    assert (tmp_path / "demo" / "demo.log").exists()
