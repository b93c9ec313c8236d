"""Operations endpoints, unauthenticated like any scrape target: /healthz and Prometheus /metrics."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text

from jitstock.server.api.context import ApiContext
from jitstock.server.api.deps import CtxDep
from jitstock.server.db.models import ORDER_STATES, Agent, Order
from jitstock.server.db.session import transaction

log = logging.getLogger(__name__)

router = APIRouter(tags=["ops"])


def _db_check(ctx: ApiContext) -> dict[str, Any]:
    try:
        with transaction(ctx.session_factory, readonly=True) as s:
            s.execute(text("SELECT 1"))
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True}


@router.get(
    "/healthz",
    responses={503: {"description": "state DB, time series store or MQTT down"}},
)
def healthz(ctx: CtxDep) -> JSONResponse:
    """200 when the state DB answers and MQTT (if this process has it) is connected, else 503.

    ``status`` is ``ok``, ``degraded`` (200, with ``reasons``: ingest has not advanced
    while messages wait, or dead letters arrived recently and were not replayed) or
    ``unhealthy`` (503).  While the broker connection is down, ``mqtt.problem``
    says why once an attempt has failed (TLS verification, refused credentials, unreachable).
    """
    db = _db_check(ctx)
    try:
        tsdb: dict[str, Any] = {"ok": True, **ctx.tsdb.stats()}
    except Exception as exc:
        tsdb = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    body: dict[str, Any] = {"db": db, "tsdb": tsdb}
    mqtt_connected = getattr(ctx, "mqtt_connected", None)
    healthy = bool(db["ok"])
    if callable(mqtt_connected):
        connected = bool(mqtt_connected())
        body["mqtt"] = {"connected": connected}
        # why not (wrong CA, refused credentials, unreachable), as the server logged it once
        problem = getattr(getattr(ctx, "mqtt", None), "problem", None)
        if not connected and problem:
            body["mqtt"]["problem"] = str(problem)
        healthy = healthy and connected
    reasons = _degraded(ctx, body)
    body["status"] = "unhealthy" if not healthy else "degraded" if reasons else "ok"
    if reasons:
        body["reasons"] = reasons
    return JSONResponse(body, status_code=200 if healthy else 503)


def _degraded(ctx: ApiContext, body: dict[str, Any]) -> list[str]:
    """Why the server works but not as it should: ingest stalled, recent dead letters."""
    reasons: list[str] = []
    ingest = getattr(ctx, "ingest", None)
    stalled = getattr(ingest, "stalled", None)
    if callable(stalled):
        why = stalled()
        body["ingest"] = {"stalled": why is not None}
        if why:
            reasons.append(why)
    store = getattr(ctx, "dead_letters", None)
    recent = getattr(store, "recent", None)
    if callable(recent) and body["db"]["ok"]:
        try:
            n = int(recent())
        except Exception as exc:
            body["dead_letters"] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            window_min = round(float(getattr(store, "recent_s", 0)) / 60, 1)
            body["dead_letters"] = {"recent": n, "window_min": window_min}
            if n:
                reasons.append(
                    f"{n} MQTT messages could not be applied in the last {window_min:g} min "
                    "(dead letters: GET /api/v1/dead-letters)"
                )
    return reasons


def refresh_gauges(ctx: ApiContext) -> None:
    """Set the gauges that are read from state rather than counted as events."""
    m = ctx.metrics
    try:
        with transaction(ctx.session_factory, readonly=True) as s:
            by_state = {
                state: int(n)
                for state, n in s.execute(
                    select(Order.state, func.count()).group_by(Order.state)
                )
            }
            online = (
                s.scalar(
                    select(func.count())
                    .select_from(Agent)
                    .where(Agent.online.is_(True))
                )
                or 0
            )
        for state in set(ORDER_STATES) | set(by_state):
            m.orders_by_state.labels(state=state).set(by_state.get(state, 0))
        m.agents_online.set(online)
    except Exception:
        log.exception("metrics: state DB gauges not refreshed")
    try:
        stats = ctx.tsdb.stats()
        m.spool_points.set(stats.get("spool_points", 0) or 0)
        m.spool_age.set(stats.get("spool_oldest_age_s", 0) or 0)
    except Exception:
        log.exception("metrics: tsdb gauges not refreshed")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(ctx: CtxDep) -> Response:
    """Prometheus text exposition of this server's registry."""
    refresh_gauges(ctx)
    return Response(
        generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
