"""Agents: records of the devices that publish (edge Pis, PLCs, dock scanner stations)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.agents import liveness
from jitstock.server.api import agent_catalog, catalog
from jitstock.server.api.agent_schemas import AgentCreate, AgentPublic, AgentUpdate
from jitstock.server.api.context import ApiContext
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.effects import agents_changed
from jitstock.server.db.models import Agent

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


def _public(ctx: ApiContext, row: Agent, bins: int) -> AgentPublic:
    silent_ms = int(ctx.settings.alert_agent_silent_s * 1000)
    return AgentPublic(
        id=row.id,
        site_id=row.site_id,
        description=row.description,
        receive_bins=row.receive_bins,
        state=liveness(row).state(ctx.clock.time_ms(), silent_ms),
        online=row.online,
        reported_state=row.reported_state,
        last_seen_ms=row.last_seen_ms,
        status_ms=row.status_ms,
        version=row.version,
        sensors=row.sensors,
        bins=bins,
    )


def _one(ctx: ApiContext, session: Session, row: Agent) -> AgentPublic:
    return _public(ctx, row, agent_catalog.bin_counts(session, [row.id]).get(row.id, 0))


@router.get("")
def list_agents(
    session: ReadSessionDep,
    _key: Viewer,
    ctx: CtxDep,
    site: Annotated[str | None, Query(description="only agents of this site")] = None,
) -> list[AgentPublic]:
    """Every agent, with its state and how many bins it feeds."""
    stmt = select(Agent).order_by(Agent.id)
    if site is not None:
        stmt = stmt.where(Agent.site_id == site)
    counts = agent_catalog.bin_counts(session)
    return [_public(ctx, a, counts.get(a.id, 0)) for a in session.scalars(stmt)]


@router.get("/{agent_id}")
def get_agent(
    agent_id: str, session: ReadSessionDep, _key: Viewer, ctx: CtxDep
) -> AgentPublic:
    """One agent."""
    return _one(ctx, session, catalog.get_or_404(session, Agent, "agent", agent_id))


@router.post("", status_code=201)
def create_agent(
    body: AgentCreate, session: SessionDep, key: Manager, ctx: CtxDep
) -> AgentPublic:
    """Register an agent; ingest accepts its readings, scans and status from now on."""
    row = agent_catalog.create_agent(session, body, key.name, ctx.clock.time_ms())
    session.commit()
    agents_changed(ctx)
    return _public(ctx, row, 0)


@router.patch("/{agent_id}")
def update_agent(
    agent_id: str, body: AgentUpdate, session: SessionDep, key: Manager, ctx: CtxDep
) -> AgentPublic:
    """Change an agent's description or the bins its scanners may receive into."""
    row = agent_catalog.update_agent(
        session, agent_id, body.changes(), key.name, ctx.clock.time_ms()
    )
    session.commit()
    return _one(ctx, session, row)


@router.delete("/{agent_id}", status_code=204)
def delete_agent(
    agent_id: str, session: SessionDep, key: Manager, ctx: CtxDep
) -> Response:
    """Remove an agent that feeds no bin; its traffic is refused from then on."""
    agent_catalog.delete_agent(session, agent_id, key.name, ctx.clock.time_ms())
    session.commit()
    agents_changed(ctx)
    return Response(status_code=204)
