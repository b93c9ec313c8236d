"""Issue 14 in a real browser: every view follows the live push (orders board, alerts, KPIs),
alerts read as sentences with links, every page fits a phone, and the bin chart hovers,
zooms and keeps its labels inside.  Screenshots at three sizes go to test-artifacts/."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import update

from jitstock.server.db.alert_models import Alert
from jitstock.server.db.session import transaction
from jitstock.server.live import SUBSCRIBER_QUEUE
from tests.server.server_support import wait_until
from tests.server.web.conftest import ADMIN_KEY, ARTIFACTS, Plant, open_page, sign_in
from tests.waits import BROWSER_WAIT_MS

# "Live" is within 1 s of the change on the server: `jitstock bench ui` measures that.
# Here, beside two other test workers on 2 cores, a bound that holds on a busy box
# (1,032 ms was seen) and still fails a page that only refreshes on a timer or a reload.
LIVE_BUDGET_MS = 5000
VIEWPORTS = {"desktop": (1280, 800), "tablet": (1024, 768), "phone": (390, 844)}
PAGES = {
    "floor": "/#/floor",
    "bin": "/#/bin/B1",
    "orders": "/#/orders",
    "alerts": "/#/alerts",
    "kpis": "/#/kpis",
}
# Each view's "data is on the page" element.
READY = {
    "floor": ".tile",
    "bin": "#chart svg",
    "orders": "#orders-matrix table",
    "alerts": "#alerts-table > *",
    "kpis": "#kpi-areas table",
}


def _observe(page: Any, selector: str, name: str) -> None:
    """Record in the page (Date.now()) when ``selector`` first matches: window[name]."""
    page.evaluate(
        """([sel, name]) => { window[name] = 0;
          const check = () => { if (!window[name] && document.querySelector(sel)) window[name] = Date.now(); };
          new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
          check(); }""",
        [selector, name],
    )


def _seen(page: Any, name: str) -> int:
    page.wait_for_function(f"() => window['{name}']", timeout=BROWSER_WAIT_MS)
    return int(page.evaluate(f"() => window['{name}']"))


def _loads(page: Any) -> int:
    return int(page.evaluate("() => performance.getEntriesByType('navigation').length"))


def test_orders_board_shows_a_new_order_a_state_change_and_overdue_live(
    plant: Plant, browser: Any
) -> None:
    page = open_page(browser, plant, path="/#/orders")
    try:
        page.locator("#orders-matrix table").wait_for(timeout=BROWSER_WAIT_MS)
        _observe(page, '#orders-t tr[data-order] a[href="#/bin/B2"]', "__newOrder")
        plant.scales["B2"].pick(31)  # 9 <= reorder point 10: the rule orders
        seen = _seen(page, "__newOrder")
        wait_until(
            lambda: plant.api("GET", "/api/v1/orders?bin=B2").json(),
            what="B2's order",
        )
        order = plant.api("GET", "/api/v1/orders?bin=B2").json()[0]
        assert seen - order["created_ms"] < LIVE_BUDGET_MS, seen - order["created_ms"]

        # the supplier confirms, promising delivery 3 s from now
        oid = order["id"]
        row = f'#orders-t tr[data-order="{oid}"]'
        _observe(page, f'{row}[data-state="acknowledged"]', "__acked")
        _observe(page, f"{row}.overdue", "__overdue")
        promised = int(time.time() * 1000) + 3000
        r = plant.api(
            "POST", f"/api/v1/orders/{oid}/ack", json={"promised_ms": promised}
        )
        assert r.status_code == 200, r.text
        acked = _seen(page, "__acked")
        acked_ms = r.json()["acked_ms"]
        assert acked - acked_ms < LIVE_BUDGET_MS, acked - acked_ms
        assert (
            page.locator(f"{row}.overdue").count() == 0 or time.time() * 1000 > promised
        )

        overdue = _seen(page, "__overdue")
        assert 0 <= overdue - promised < LIVE_BUDGET_MS, overdue - promised
        assert "1 overdue" in page.locator("#orders-summary").inner_text()
        # the matrix counts it too (it had kept the server's flag from the load: an
        # outside try saw "1 overdue" above a matrix saying 0)
        rows = [
            r.locator("td").all_inner_texts()
            for r in page.locator("#orders-matrix tbody tr").all()
        ]
        (mine,) = [r for r in rows if r and r[0] == order["supplier_id"]]
        assert mine[-1] == "1", rows
        # the state columns come in the order an order moves through them
        heads = page.locator("#orders-matrix th").all_inner_texts()
        assert heads[:4] == ["Supplier", "created", "sent", "acknowledged"], heads
        # dates with seconds, e.g. "Nov 29, 2026, 10:31:07 AM"
        created = page.locator(f'{row} td[data-label="Created"]').inner_text()
        assert str(time.gmtime().tm_year) in created
        assert created.count(":") == 2
        assert _loads(page) == 1
    finally:
        page.context.close()


def test_alerts_page_is_empty_when_all_is_well_and_shows_a_new_alert_live(
    plant: Plant, browser: Any
) -> None:
    page = open_page(browser, plant, path="/#/alerts")
    try:
        page.locator("#alerts-table > *").first.wait_for(timeout=BROWSER_WAIT_MS)
        open_alerts = plant.api("GET", "/api/v1/alerts").json()
        if not open_alerts:
            assert "All is well" in page.locator("#alerts-table").inner_text()
        _observe(page, '#alerts-t tr[data-kind="stockout"]', "__alert")
        plant.scales["B3"].pick(50)  # empty
        seen = _seen(page, "__alert")
        alert = next(
            a
            for a in plant.api("GET", "/api/v1/alerts").json()
            if a["kind"] == "stockout"
        )
        assert seen - alert["opened_ms"] < LIVE_BUDGET_MS, seen - alert["opened_ms"]
        row = page.locator('#alerts-t tr[data-kind="stockout"]')
        text = row.inner_text()
        assert "Bin B3 (SKU-B3) is empty" in text
        assert "Supplier One" in text  # the supplier by name
        assert alert["what_to_do"] in text
        assert "critical" in text
        assert "nobody has acknowledged" in text
        assert row.locator('a[href="#/bin/B3"]').count() == 1
        wait_until(
            lambda: plant.api("GET", "/api/v1/orders?bin=B3").json(),
            what="B3's order",
        )
        # acknowledging shows who is on it
        row.locator("button.ack").click()
        page.locator(
            '#alerts-t tr[data-kind="stockout"][data-state="acknowledged"]'
        ).wait_for(timeout=BROWSER_WAIT_MS)
        assert "is on it" in row.inner_text()
        assert _loads(page) == 1
    finally:
        page.context.close()
        plant.scales["B3"].refill(50)


def test_an_alert_raised_before_the_stream_starts_still_reaches_the_page(
    plant: Plant, browser: Any
) -> None:
    """The page draws its data, then opens its event stream: an alert raised in between
    is pushed to no stream, so the page must fetch again once the stream is up."""

    def stockout_open() -> bool:
        alerts = plant.api("GET", "/api/v1/alerts").json()
        return any(
            a["kind"] == "stockout" and a["bin_id"] == "B3" and a["state"] != "resolved"
            for a in alerts
        )

    # an earlier test's stockout of B3 (refilled since, maybe acknowledged) must be over
    wait_until(lambda: not stockout_open(), what="no open stockout of B3")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    held: list[Any] = []
    # the stream waits until released
    page.route("**/api/v1/stream", lambda route: held.append(route))
    try:
        page.goto(plant.url + "/#/alerts")
        sign_in(page, key=ADMIN_KEY)
        page.locator("#alerts-table > *").first.wait_for(timeout=BROWSER_WAIT_MS)
        plant.scales["B3"].pick(50)  # empty: a stockout alert
        wait_until(stockout_open, what="the stockout alert on the server")
        deadline = time.monotonic() + BROWSER_WAIT_MS / 1000
        while not held and time.monotonic() < deadline:
            page.wait_for_timeout(100)  # lets Playwright hand the stream request over
        assert held, "the page never opened its event stream"
        assert page.locator('#alerts-t tr[data-kind="stockout"]').count() == 0
        for route in held:
            route.continue_()
        page.locator('#alerts-t tr[data-kind="stockout"]').wait_for(
            timeout=BROWSER_WAIT_MS
        )
        assert _loads(page) == 1
    finally:
        ctx.close()
        plant.scales["B3"].refill(50)


def test_kpis_follow_a_pick_live_and_define_their_columns(
    plant: Plant, browser: Any
) -> None:
    page = open_page(browser, plant, path="/#/kpis")
    try:
        cell = '#kpi-areas-t tbody tr:first-child td[data-label="Consumed"]'
        page.locator(cell).wait_for(timeout=BROWSER_WAIT_MS)
        before = int(page.locator(cell).inner_text())
        page.evaluate(
            """([sel, before]) => { window.__kpi = 0;
              new MutationObserver(() => { const c = document.querySelector(sel);
                if (!window.__kpi && c && +c.textContent > before) window.__kpi = Date.now(); })
                .observe(document.body, {subtree: true, childList: true, characterData: true}); }""",
            [cell, before],
        )
        plant.scales["B1"].pick(2)
        seen = _seen(page, "__kpi")
        level = plant.level("B1")
        assert seen - level["last_seen_ms"] < LIVE_BUDGET_MS, (
            seen - level["last_seen_ms"]
        )
        assert int(page.locator(cell).inner_text()) == before + 2
        title = page.locator("#kpi-areas th", has_text="Fill rate").get_attribute(
            "title"
        )
        assert title
        assert "received" in title
        assert _loads(page) == 1
    finally:
        page.context.close()


def test_bin_chart_hovers_zooms_and_keeps_its_labels_inside(
    plant: Plant, browser: Any
) -> None:
    page = open_page(browser, plant, path="/#/bin/B1")
    try:
        svg = page.locator("#chart svg")
        page.locator("#chart svg path.level").wait_for(
            state="attached", timeout=BROWSER_WAIT_MS
        )
        # a new bin's data spans minutes: the default range is the shortest that holds it
        on = page.locator("#ranges button.on").get_attribute("data-range")
        assert on in ("quarter", "hour"), on
        box = svg.bounding_box()
        assert box
        line = page.locator("#chart svg path.level").bounding_box()
        assert line
        # over the drawn line: a reading holds there
        page.mouse.move(line["x"] + line["width"] * 0.8, box["y"] + box["height"] / 2)
        tip = page.locator("#chart .chart-tip")
        tip.wait_for(state="visible", timeout=BROWSER_WAIT_MS)
        assert tip.get_attribute("data-value") not in (None, "")
        assert "on hand" in tip.inner_text()
        assert tip.inner_text().count(":") >= 2

        before = (page.input_value("#range-from"), page.input_value("#range-to"))
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + 100)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 100, steps=5)
        page.mouse.up()
        page.locator("#zoom-reset").wait_for(state="visible", timeout=BROWSER_WAIT_MS)
        page.wait_for_function(
            "(b) => document.getElementById('range-from').value !== b",
            arg=before[0],
            timeout=BROWSER_WAIT_MS,
        )
        after = (page.input_value("#range-from"), page.input_value("#range-to"))
        assert before[0] < after[0] < after[1] < before[1], (before, after)
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 844})
            page.wait_for_timeout(600)  # the chart redraws at the new width
            _assert_labels_inside(page)
    finally:
        page.context.close()


def _assert_labels_inside(page: Any) -> None:
    out = page.evaluate(
        """() => { const svg = document.querySelector('#chart svg'), r = svg.getBoundingClientRect();
          return [...svg.querySelectorAll('text')].map(t => { const b = t.getBoundingClientRect();
            return {text: t.textContent, ok: b.left >= r.left - 0.5 && b.right <= r.right + 0.5 && b.top >= r.top - 0.5 && b.bottom <= r.bottom + 0.5}; }); }"""
    )
    assert out, "no axis labels"
    assert all(x["ok"] for x in out), [x for x in out if not x["ok"]]


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_every_view_fits_and_is_captured(plant: Plant, browser: Any, size: str) -> None:
    w, h = VIEWPORTS[size]
    page = open_page(browser, plant)
    try:
        page.set_viewport_size({"width": w, "height": h})
        ARTIFACTS.mkdir(exist_ok=True)
        for name, path in PAGES.items():
            page.goto(plant.url + path)
            page.locator(READY[name]).first.wait_for(
                state="attached", timeout=BROWSER_WAIT_MS
            )
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / f"{name}-{w}x{h}.png"), full_page=True)
            widths = page.evaluate(
                "() => [document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert widths[0] <= widths[1], (name, size, widths)
    finally:
        page.context.close()


def test_tile_badge_stays_while_the_order_is_open_above_the_reorder_point(
    plant: Plant, browser: Any
) -> None:
    page = open_page(browser, plant)
    try:
        badge = page.locator('.tile[data-bin="B1"] .t-order')
        page.locator('.tile[data-bin="B1"]').wait_for(timeout=BROWSER_WAIT_MS)
        # raising the reorder point above the level orders at once; lowering it back
        # leaves the bin above its reorder point with the order still open
        on_hand = plant.level("B1")["on_hand"]
        r = plant.api("PATCH", "/api/v1/bins/B1", json={"reorder_point": on_hand + 5})
        assert r.status_code == 200, r.text
        wait_until(
            lambda: [
                o
                for o in plant.api("GET", "/api/v1/orders?bin=B1").json()
                if o["state"] in ("created", "sent", "acknowledged")
            ],
            what="an open order for B1",
        )
        r = plant.api("PATCH", "/api/v1/bins/B1", json={"reorder_point": 10})
        assert r.status_code == 200, r.text
        plant.scales["B1"].pick(1)  # a reading, so the tile is pushed with its new mark
        page.locator('.tile[data-bin="B1"][data-status="ok"]').wait_for(
            timeout=BROWSER_WAIT_MS
        )
        badge.wait_for(state="visible", timeout=BROWSER_WAIT_MS)
        assert badge.inner_text().startswith("order ")
        # the whole badge shows: nothing is cut off with an ellipsis
        assert page.evaluate(
            """() => { const b = document.querySelector('.tile[data-bin="B1"] .t-order');
              return b.scrollWidth <= b.clientWidth && b.scrollHeight <= b.clientHeight + 1; }"""
        )
    finally:
        page.context.close()


def test_a_page_that_fell_behind_fetches_what_it_shows_again(
    plant: Plant, browser: Any
) -> None:
    """A page too slow for the stream is sent ``resync`` instead of the backlog it lost:
    it reloaded only the floor, so an alerts page missed every alert pushed meanwhile."""
    page = open_page(browser, plant, path="/#/alerts")
    try:
        page.locator("#alerts-table > *").first.wait_for(timeout=BROWSER_WAIT_MS)
        page.locator("#live.on").wait_for(timeout=BROWSER_WAIT_MS)
        # an alert whose own push this page is about to lose in the flood below
        with transaction(plant.app.session_factory) as s:
            s.add(
                Alert(
                    kind="dead_letter",
                    entity="agent:resync-test",
                    severity="critical",
                    message="resync test",
                    opened_ms=int(time.time() * 1000),
                )
            )
        assert page.locator('#alerts-t tr[data-kind="dead_letter"]').count() == 0
        for i in range(5 * SUBSCRIBER_QUEUE):  # far more than a page may have queued
            plant.app.live.publish("flood", {"i": i})
        page.locator('#alerts-t tr[data-kind="dead_letter"]').wait_for(
            timeout=BROWSER_WAIT_MS
        )
        assert _loads(page) == 1
    finally:
        page.context.close()
        with transaction(plant.app.session_factory) as s:
            s.execute(
                update(Alert)
                .where(Alert.entity == "agent:resync-test")
                .values(state="resolved", resolved_ms=int(time.time() * 1000))
            )
