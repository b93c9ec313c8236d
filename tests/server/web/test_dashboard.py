"""Issue 6 acceptance in a real browser: headless Chromium against a live server fed by
simulated scales through real edge agents and a real Mosquitto."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from jitstock.server.db.alert_models import Alert
from jitstock.server.db.session import transaction
from tests.server.server_support import wait_until
from tests.server.web.conftest import ARTIFACTS, Plant, open_page
from tests.waits import BROWSER_WAIT_MS

# "Live" is within 1 s of the change on the server: `jitstock bench ui` measures that.
# Here, beside two other test workers on 2 cores, a bound that holds on a busy box
# (1,032 ms was seen) and still fails a page that only refreshes on a timer or a reload.
LIVE_BUDGET_MS = 5000


def tile(page, bin_id: str):
    return page.locator(f'.tile[data-bin="{bin_id}"]')


def test_pick_updates_the_tile_live_and_low_stock_shows_status_and_order_badge(
    plant: Plant, browser
) -> None:
    page = open_page(browser, plant)
    try:
        b1 = tile(page, "B1")
        b1.locator(".t-count").filter(has_text="100").wait_for(timeout=BROWSER_WAIT_MS)
        assert b1.get_attribute("data-status") == "ok"
        # record, in the page, the wall-clock time the tile's count changes (no reload allowed)
        page.evaluate(
            """() => { window.__loads = performance.getEntriesByType('navigation').length;
              const el = document.querySelector('.tile[data-bin="B1"] .t-count');
              new MutationObserver(() => { if (!window.__changedAt && el.textContent.startsWith('97')) window.__changedAt = Date.now(); })
                .observe(el, {childList: true, characterData: true, subtree: true}); }"""
        )
        plant.scales["B1"].pick(3)
        page.wait_for_function("() => window.__changedAt", timeout=BROWSER_WAIT_MS)
        changed_at = page.evaluate("() => window.__changedAt")
        level = plant.level("B1")
        assert level["on_hand"] == 97
        # last_seen_ms is the reading's own timestamp (taken on the edge): the page changed
        # within a second of it, so within a second of its arrival at the server
        assert changed_at - level["last_seen_ms"] < LIVE_BUDGET_MS, (
            changed_at - level["last_seen_ms"]
        )
        assert page.evaluate("() => window.__loads") == 1

        plant.scales["B1"].pick(10)  # 87 <= reorder point 90
        page.locator('.tile[data-bin="B1"][data-status="below_rop"]').wait_for(
            timeout=BROWSER_WAIT_MS
        )
        badge = b1.locator(".t-order")
        badge.wait_for(state="visible", timeout=BROWSER_WAIT_MS)
        assert "order" in badge.inner_text()
        assert b1.locator(".t-status").inner_text() == "below ROP"
        orders = plant.api("GET", "/api/v1/orders?bin=B1").json()
        assert len(orders) == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "floor.png"))
    finally:
        page.context.close()


def _alerts(plant: Plant, kind: str) -> list[Alert]:
    with transaction(plant.app.session_factory, readonly=True) as s:
        return list(s.scalars(select(Alert).where(Alert.kind == kind)))


def test_stopped_agent_shows_offline_raises_one_alert_and_recovers(
    plant: Plant, browser
) -> None:
    page = open_page(browser, plant)
    try:
        b3 = tile(page, "B3")
        b3.locator(".t-count").filter(has_text="50").wait_for(timeout=BROWSER_WAIT_MS)
        plant.stop_agent("pi-2")
        page.locator('.tile[data-bin="B3"][data-status="offline"]').wait_for(
            timeout=BROWSER_WAIT_MS
        )
        assert b3.locator(".t-status").inner_text() == "agent offline"
        assert (
            tile(page, "B1").get_attribute("data-status") != "offline"
        )  # other agent unaffected
        wait_until(
            lambda: _alerts(plant, "agent_offline"), what="the agent_offline alert"
        )
        time.sleep(2.5)  # two more periodic checks: still one alert
        alerts = _alerts(plant, "agent_offline")
        assert [(a.entity, a.state) for a in alerts] == [("agent:pi-2", "open")]
        page.goto(plant.url + "/#/alerts")
        page.locator('tr[data-kind="agent_offline"][data-state="open"]').wait_for(
            timeout=BROWSER_WAIT_MS
        )
        assert page.locator('tr[data-kind="agent_offline"]').count() == 1
        metrics = plant.api("GET", "/metrics").text
        assert 'jitstock_alerts_open{kind="agent_offline"} 1.0' in metrics

        plant.start_agent("pi-2")
        page.goto(plant.url + "/#/floor")
        page.locator('.tile[data-bin="B3"][data-status="ok"]').wait_for(
            timeout=BROWSER_WAIT_MS
        )
        wait_until(
            lambda: _alerts(plant, "agent_offline")[0].state == "resolved",
            what="the alert resolved",
        )
        assert len(_alerts(plant, "agent_offline")) == 1
        with transaction(plant.app.session_factory, readonly=True) as s:
            assert (
                s.scalar(
                    select(func.count())
                    .select_from(Alert)
                    .where(Alert.resolved_ms.is_(None), Alert.kind == "agent_offline")
                )
                == 0
            )
    finally:
        page.context.close()


def test_bin_page_chart_has_reorder_line_and_order_marker(
    plant: Plant, browser
) -> None:
    if not plant.api("GET", "/api/v1/orders?bin=B1").json():
        plant.scales["B1"].pick(15)
        wait_until(
            lambda: plant.api("GET", "/api/v1/orders?bin=B1").json(),
            what="an order for B1",
        )
    page = open_page(browser, plant, path="/#/bin/B1")
    try:
        line = page.locator("#chart svg line.rop-line")
        line.wait_for(state="attached", timeout=BROWSER_WAIT_MS)
        assert line.get_attribute("data-value") == "90"
        order = plant.api("GET", "/api/v1/orders?bin=B1").json()[0]
        page.locator(f'#chart svg g.order-marker[data-order="{order["id"]}"]').wait_for(
            state="attached", timeout=BROWSER_WAIT_MS
        )
        page.click('#ranges button[data-range="hour"]')
        page.wait_for_function("() => document.querySelector('#chart svg path.level')")
        assert page.locator("#chart svg path.level").count() == 1
        assert (
            page.locator("#chart svg line.rop-line").get_attribute("data-value") == "90"
        )
        # manager actions are offered to an admin key
        assert page.locator("#act-recount").is_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "bin-page.png"), full_page=True)
    finally:
        page.context.close()


def test_bin_page_says_when_the_target_does_not_fit_the_bin(
    plant: Plant, browser
) -> None:
    """A reorder point plus one order above the bin's capacity is said on the bin page
    (the demo's bin that reordered seconds after every delivery, with no word why)."""
    b2 = plant.api("GET", "/api/v1/bins/B2").json()
    before, rop = b2["capacity"], b2["reorder_point"]
    # the API takes a capacity down to the reorder point; one order more no longer fits
    r = plant.api("PATCH", "/api/v1/bins/B2", json={"capacity": rop})
    assert r.status_code == 200, r.text
    page = open_page(browser, plant, path="/#/bin/B2")
    try:
        warning = page.locator("#bin-policy p.error")
        warning.wait_for(timeout=BROWSER_WAIT_MS)
        assert f"is more than the bin holds ({rop})" in warning.inner_text()
    finally:
        page.context.close()
        r = plant.api("PATCH", "/api/v1/bins/B2", json={"capacity": before})
        assert r.status_code == 200, r.text


def test_viewer_key_sees_no_manager_actions_and_the_api_refuses_them(
    plant: Plant, browser
) -> None:
    page = open_page(browser, plant, key=plant.viewer_key, path="/#/bin/B2")
    try:
        page.locator("#bin-facts dt").first.wait_for(timeout=BROWSER_WAIT_MS)
        assert page.locator("#who").inner_text().endswith("viewer")
        for button in ("#act-recount", "#act-recalibrate", "#act-pause"):
            assert not page.locator(button).is_visible()
    finally:
        page.context.close()
    for path, body in (
        ("recount", {"on_hand": 5}),
        ("recalibrate", {"count": 40}),
        ("pause", {"paused": True}),
    ):
        r = plant.api(
            "POST", f"/api/v1/bins/B2/{path}", key=plant.viewer_key, json=body
        )
        assert r.status_code == 403, (path, r.text)
    assert plant.level("B2")["paused"] is False
    # and a manager's recount works, through the same endpoint
    r = plant.api("POST", "/api/v1/bins/B2/recount", json={"on_hand": 38})
    assert r.status_code == 200, r.text
    assert plant.level("B2")["on_hand"] == 38
