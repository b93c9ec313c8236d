"""The dashboard: the page and its assets, floor tiles, live stream, alerts, orders board, KPIs, sign-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from jitstock.server import floor, kpis
from jitstock.server.alert_rules import policy_marks
from jitstock.server.alerts import alert_dict
from jitstock.server.api.auth import principal_for_key
from jitstock.server.api.deps import (
    Admin,
    CtxDep,
    CurrentKey,
    ReadSessionDep,
    SessionDep,
    Viewer,
)
from jitstock.server.api.errors import Conflict, NotFound, Unauthorized
from jitstock.server.api.timeparse import parse_instant
from jitstock.server.api.users import hash_password, sign_in
from jitstock.server.db.alert_models import Alert, DashboardUser
from jitstock.server.db.models import API_ROLES, OPEN_ORDER_STATES, ApiKey, Bin, Order
from jitstock.server.db.secrets import hash_api_key
from jitstock.server.db.session import transaction
from jitstock.server.live import CLOSE, KEEPALIVE_S, sse

router = APIRouter(tags=["dashboard"])

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


@router.get("/api/v1/me")
def me(key: CurrentKey, ctx: CtxDep) -> dict[str, Any]:
    """Who the caller is: name and role (the page hides what the role may not do)."""
    return {"name": key.name, "role": key.role, "auth": ctx.settings.auth}


class LoginRequest(BaseModel):
    """User name and password."""

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=500)


class UserCreate(LoginRequest):
    """A new dashboard user."""

    role: Literal["viewer", "manager", "admin"] = "viewer"


@router.post("/api/v1/login")
def login(body: LoginRequest, session: SessionDep, ctx: CtxDep) -> dict[str, str]:
    """Sign in with user name and password: returns an API key for this session."""
    got = sign_in(session, body.username, body.password, ctx.clock.time_ms())
    if got is None:
        raise Unauthorized("wrong user name or password")
    session.commit()
    return {"key": got[0], "role": got[1]}


@router.post("/api/v1/logout", status_code=204)
def logout(request: Request, session: SessionDep, _key: CurrentKey) -> Response:
    """Revoke the session key of a sign-in (a plain API key is left alone)."""
    plain = request.headers.get("x-api-key") or request.headers.get(
        "authorization", ""
    ).removeprefix("Bearer ")
    row = session.scalars(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(plain))
    ).one_or_none()
    if row is not None and row.name.startswith("login:"):
        row.revoked = True
        session.commit()
    return Response(status_code=204)


@router.post("/api/v1/users", status_code=201)
def create_user(
    body: UserCreate, session: SessionDep, _key: Admin, ctx: CtxDep
) -> dict[str, str]:
    """Add a dashboard user (admin); the password is stored as an scrypt hash."""
    if body.role not in API_ROLES:
        raise Conflict(f"unknown role {body.role!r}", field="role")
    if session.get(DashboardUser, body.username) is not None:
        raise Conflict(f"user {body.username!r} exists", field="username")
    session.add(
        DashboardUser(
            username=body.username,
            password_hash=hash_password(body.password),
            role=body.role,
            created_ms=ctx.clock.time_ms(),
        )
    )
    session.commit()
    return {"username": body.username, "role": body.role}


@router.get("/api/v1/floor")
def floor_view(session: ReadSessionDep, _key: Viewer, ctx: CtxDep) -> Response:
    """Every bin's tile (the floor view's first render); live changes come on /api/v1/stream."""
    import orjson

    body = {"now_ms": ctx.clock.time_ms(), "tiles": floor.tiles(session)}
    return Response(orjson.dumps(body), media_type="application/json")


def _stream_auth(ctx: Any, key: str | None) -> None:
    if ctx.settings.auth == "off":
        return
    if not key:
        raise Unauthorized(
            "the stream needs ?key=<API key> (EventSource cannot send headers)"
        )
    with transaction(ctx.session_factory, readonly=True) as s:
        principal = principal_for_key(s, key)
    if principal is None or not principal.allows("viewer"):
        raise Unauthorized("invalid or revoked API key")


@router.get("/api/v1/stream")
async def stream(
    ctx: CtxDep,
    key: Annotated[
        str | None, Query(description="API key (EventSource sends no headers)")
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events: `tiles` (changed bins), `alerts` (alert changes), `resync` (reload all)."""
    await run_in_threadpool(_stream_auth, ctx, key)
    hub = getattr(ctx, "live", None)
    if hub is None:
        raise NotFound("stream", "live hub not running")
    sub = hub.subscribe()

    async def events() -> AsyncIterator[str]:
        try:
            # the browser retries after 1 s when the server restarts
            yield "retry: 1000\n\n" + sse("hello", {"now_ms": ctx.clock.time_ms()})
            while True:
                try:
                    msg = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if msg == CLOSE:
                    return
                yield msg
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


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
    """Alerts, newest first; by default those not yet resolved."""
    stmt = select(Alert).order_by(Alert.opened_ms.desc(), Alert.id.desc()).limit(limit)
    if state == "unresolved":
        stmt = stmt.where(Alert.resolved_ms.is_(None))
    elif state != "all":
        stmt = stmt.where(Alert.state == state)
    if kind:
        stmt = stmt.where(Alert.kind == kind)
    return [alert_dict(a) for a in session.scalars(stmt)]


@router.post("/api/v1/alerts/{alert_id}/ack")
def ack_alert(alert_id: int, key: Viewer, ctx: CtxDep) -> dict[str, Any]:
    """Acknowledge an alert ("I am on it"); any signed-in role may, it changes no stock."""
    monitor = getattr(ctx, "alerts", None)
    if monitor is None:
        raise NotFound("alerts", "alert monitor not running")
    out: dict[str, Any] | None = monitor.acknowledge(alert_id, key.name)
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
