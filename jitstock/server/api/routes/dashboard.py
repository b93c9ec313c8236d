"""The dashboard: the page and its assets, floor tiles, live stream, alerts, orders board, KPIs, sign-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy import select

from jitstock.server import floor, kpis
from jitstock.server.alert_rules import policy_marks
from jitstock.server.alert_text import describe
from jitstock.server.alerts import alert_dict
from jitstock.server.api.auth import key_is_live
from jitstock.server.api.deps import CtxDep, ReadSessionDep, Viewer
from jitstock.server.api.errors import Forbidden, NotFound
from jitstock.server.api.routes import signin
from jitstock.server.api.schemas import RowId
from jitstock.server.api.timeparse import parse_instant
from jitstock.server.db.alert_models import Alert
from jitstock.server.db.models import OPEN_ORDER_STATES, ApiKey, Bin, Order
from jitstock.server.db.session import transaction
from jitstock.server.live import CLOSE, KEEPALIVE_S, KEY_CHECK_S, sse

router = APIRouter(tags=["dashboard"])
router.include_router(signin.router)  # sign-in, sessions and users

WEB = resources.files("jitstock.server") / "web"
ASSETS = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "chart.js": "text/javascript",
}
DEFAULT_KPI_DAYS = 7


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    """The dashboard page (one file; its views are client-side)."""
    return HTMLResponse(
        (WEB / "index.html").read_text(), headers={"Cache-Control": "no-cache"}
    )


@router.get("/ui/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    """A static asset of the page (no CDN: everything ships in the package)."""
    if name not in ASSETS:
        raise NotFound("asset", name)
    return Response(
        (WEB / name).read_bytes(),
        media_type=ASSETS[name],
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/api/v1/floor")
def floor_view(session: ReadSessionDep, _key: Viewer, ctx: CtxDep) -> Response:
    """Every bin's tile (the floor view's first render); live changes come on /api/v1/stream."""
    import orjson

    tiles = floor.tiles(
        session, now_ms=ctx.clock.time_ms(), silent_ms=ctx.settings.agent_silent_ms
    )
    # stamped after the read: the page keeps a pushed tile newer than this answer
    body = {"now_ms": ctx.clock.time_ms(), "tiles": tiles}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/api/v1/stream")
async def stream(ctx: CtxDep, key: Viewer) -> StreamingResponse:
    """Server-Sent Events: `tiles` (changed bins), `alerts` (alert changes), `resync` (reload all).

    Authenticated like every route (the dashboard's session cookie, or a header for
    machines; never a key in the URL).  The stream ends when its key is revoked or expires.
    """
    hub = getattr(ctx, "live", None)
    if hub is None:
        raise NotFound("stream", "live hub not running")
    sub = hub.subscribe(key.key_id)
    check_s = getattr(hub, "key_check_s", KEY_CHECK_S)

    async def events() -> AsyncIterator[str]:
        try:
            # the browser retries after 1 s when the server restarts
            yield "retry: 1000\n\n" + sse("hello", {"now_ms": ctx.clock.time_ms()})
            # the re-check is a polling cadence in real time, whatever the domain clock does
            loop = asyncio.get_running_loop()
            next_check = loop.time() + check_s
            while True:
                wait_s = min(KEEPALIVE_S, check_s)
                if key.expires_ms is not None:
                    wait_s = min(wait_s, (key.expires_ms - ctx.clock.time_ms()) / 1000)
                try:
                    msg = await asyncio.wait_for(sub.queue.get(), max(0.0, wait_s))
                except TimeoutError:
                    msg = None
                if msg == CLOSE:
                    return
                if key.expires_ms is not None and ctx.clock.time_ms() >= key.expires_ms:
                    return
                if loop.time() >= next_check:
                    next_check = loop.time() + check_s
                    if not await run_in_threadpool(_key_live, ctx, key.key_id):
                        return
                yield ": keepalive\n\n" if msg is None else msg
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _key_live(ctx: Any, key_id: int | None) -> bool:
    """Whether the key a stream was opened with still admits it."""
    if key_id is None:  # auth off
        return True
    with transaction(ctx.session_factory, readonly=True) as s:
        row = s.get(ApiKey, key_id)
        return row is not None and key_is_live(row, ctx.clock.time_ms())


@router.get("/api/v1/alerts")
def list_alerts(
    session: ReadSessionDep,
    _key: Viewer,
    state: Annotated[
        Literal["unresolved", "open", "acknowledged", "resolved", "all"], Query()
    ] = "unresolved",
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    """Alerts, newest first; by default those not yet resolved.

    Each carries ``headline`` and ``what_to_do`` for people, and the bin, SKU,
    supplier and order it is about (the page links to them)."""
    stmt = select(Alert).order_by(Alert.opened_ms.desc(), Alert.id.desc()).limit(limit)
    if state == "unresolved":
        stmt = stmt.where(Alert.resolved_ms.is_(None))
    elif state != "all":
        stmt = stmt.where(Alert.state == state)
    if kind:
        stmt = stmt.where(Alert.kind == kind)
    return describe(session, (alert_dict(a) for a in session.scalars(stmt)))


@router.post("/api/v1/alerts/{alert_id}/ack")
def ack_alert(alert_id: RowId, key: Viewer, ctx: CtxDep) -> dict[str, Any]:
    """Acknowledge an alert ("I am on it"): any signed-in role for warnings; a critical
    alert (acknowledging a reported one resolves it) needs the manager role."""
    monitor = getattr(ctx, "alerts", None)
    if monitor is None:
        raise NotFound("alerts", "alert monitor not running")
    try:
        out: dict[str, Any] | None = monitor.acknowledge(
            alert_id, key.name, may_ack_critical=key.allows("manager")
        )
    except PermissionError as exc:
        raise Forbidden(str(exc)) from exc
    if out is None:
        raise NotFound("alert", str(alert_id))
    return out


@router.get("/api/v1/board/orders")
def orders_board(session: ReadSessionDep, _key: Viewer, ctx: CtxDep) -> dict[str, Any]:
    """Open orders with their bin's level, overdue flag and projected stockout time."""
    now = ctx.clock.time_ms()
    rows = session.execute(
        select(Order, Bin.on_hand, Bin.area, Bin.line)
        .join(Bin, Bin.id == Order.bin_id)
        .where(Order.state.in_(OPEN_ORDER_STATES))
        .order_by(Order.created_ms)
    ).all()
    marks = policy_marks(session, [o.bin_id for o, *_ in rows])
    out = []
    for o, on_hand, area, line in rows:
        rate = marks.get(o.bin_id, {}).get("rate_per_day")
        out.append(
            {
                "id": o.id,
                "bin": o.bin_id,
                "area": area,
                "line": line,
                "sku": o.sku_id,
                "supplier": o.supplier_id,
                "state": o.state,
                "qty": o.qty,
                "created_ms": o.created_ms,
                "acked_ms": o.acked_ms,
                "promised_ms": o.promised_ms,
                "shipped_ms": o.shipped_ms,
                "overdue": o.promised_ms is not None and o.promised_ms < now,
                "on_hand": on_hand,
                "stockout_ms": int(now + on_hand / rate * 86_400_000) if rate else None,
            }
        )
    return {"now_ms": now, "orders": out}


@router.get("/api/v1/kpis")
def get_kpis(
    session: ReadSessionDep,
    _key: Viewer,
    ctx: CtxDep,
    start: Annotated[
        str | None, Query(description="epoch ms or ISO 8601; default end - 7 days")
    ] = None,
    end: Annotated[
        str | None, Query(description="epoch ms or ISO 8601; default now")
    ] = None,
    area: Annotated[str | None, Query(description="only this area")] = None,
) -> dict[str, Any]:
    """JIT KPIs per area for a period, supplier on-time/quality rates and the consumption Pareto."""
    end_ms = parse_instant("end", end) if end else ctx.clock.time_ms()
    start_ms = (
        parse_instant("start", start)
        if start
        else end_ms - DEFAULT_KPI_DAYS * 86_400_000
    )
    return kpis.compute(session, start_ms, end_ms, area or None)
