"""Agents: records of the devices that publish (edge Pis, PLCs, dock scanner stations)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.agents import liveness
from jitstock.server.api import agent_catalog, catalog
from jitstock.server.api.agent_schemas import (
    AgentCreate,
    AgentCreated,
    AgentCredentials,
    AgentPublic,
    AgentUpdate,
)
from jitstock.server.api.context import ApiContext
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.effects import agents_changed
from jitstock.server.api.errors import ApiError, Conflict
from jitstock.server.db.models import Agent
from jitstock.server.provisioning.dynsec import DynsecCommandFailed, DynsecUnavailable
from jitstock.server.provisioning.provisioner import (
    LOCK,
    Credentials,
    Provisioner,
    ProvisioningConflict,
)

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])
log = logging.getLogger(__name__)

_ERROR_CONTENT = {
    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
}
# Routes that change an agent's client at the broker answer 503 when they cannot.
BROKER_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "description": (
            "the MQTT broker or its Dynamic Security plugin is unreachable or refused "
            "the change; nothing was changed, try again"
        ),
        "content": _ERROR_CONTENT,
    },
}


class BrokerUnavailable(ApiError):
    """The broker could not make the change; the agent record is left as it was."""

    status = 503


@contextmanager
def _at_broker() -> Iterator[None]:
    """Translate the provisioning errors into HTTP errors (nothing was committed)."""
    try:
        yield
    except DynsecUnavailable as exc:
        raise BrokerUnavailable(
            f"MQTT broker unavailable, nothing was changed (try again): {exc}"
        ) from exc
    except DynsecCommandFailed as exc:
        raise BrokerUnavailable(
            f"the broker's Dynamic Security plugin refused {exc.command} "
            f"({exc.error}); nothing was changed"
        ) from exc
    except ProvisioningConflict as exc:
        raise Conflict(str(exc)) from exc


def _commit_or_undo(session: Session, prov: Provisioner, username: str) -> None:
    """Commit; if that fails, remove the client just made, so a retry starts clean."""
    try:
        session.commit()
    except Exception:
        try:
            prov.remove(username)
        except Exception:  # the next create of this agent replaces it anyway
            log.exception(
                "could not remove MQTT client %s after a failed commit", username
            )
        raise


def _credentials(c: Credentials) -> AgentCredentials:
    return AgentCredentials(
        username=c.username, password=c.password, edge_toml=c.edge_toml
    )


def _public(ctx: ApiContext, row: Agent, bins: int) -> AgentPublic:
    silent_ms = ctx.settings.agent_silent_ms
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
        enabled=row.enabled,
        mqtt_username=row.mqtt_username,
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


@router.post("", status_code=201, responses=BROKER_RESPONSES)
def create_agent(
    body: AgentCreate, session: SessionDep, key: Manager, ctx: CtxDep
) -> AgentCreated:
    """Register an agent; ingest accepts its readings, scans and status from now on.

    When the server manages the broker (JITSTOCK_MQTT_DYNSEC_USER), this also
    creates the agent's MQTT client, confined to its own topics, and answers its
    password and a ready edge.toml, once: they are never shown again.
    """
    prov = Provisioner.from_settings(ctx.settings)
    now = ctx.clock.time_ms()
    if prov is None:
        row = agent_catalog.create_agent(session, body, key.name, now)
        session.commit()
        agents_changed(ctx)
        return AgentCreated(**_public(ctx, row, 0).model_dump(), credentials=None)
    with LOCK:
        # the record's checks first: a refused request changes nothing at the broker
        row = agent_catalog.create_agent(session, body, key.name, now)
        with _at_broker():
            creds = prov.create(row.id, row.site_id)
        row.mqtt_username = creds.username
        agent_catalog.audit_credentials(session, key.name, now, row.id, "created")
        _commit_or_undo(session, prov, creds.username)
    agents_changed(ctx)
    return AgentCreated(
        **_public(ctx, row, 0).model_dump(), credentials=_credentials(creds)
    )


@router.post("/{agent_id}/credentials", responses=BROKER_RESPONSES)
def new_credentials(
    agent_id: str, session: SessionDep, key: Manager, ctx: CtxDep
) -> AgentCredentials:
    """A new MQTT client and password for an existing agent, shown once.

    For an agent made before the server managed the broker, or to replace a lost
    or leaked password (the old one stops working; a connected agent is
    disconnected).  A disabled agent stays disabled.
    """
    prov = Provisioner.from_settings(ctx.settings)
    row = catalog.get_or_404(session, Agent, "agent", agent_id)
    if prov is None:
        raise Conflict(
            "this server does not manage the broker's clients "
            "(JITSTOCK_MQTT_DYNSEC_USER is not set, see docs/provisioning.md)"
        )
    now = ctx.clock.time_ms()
    with LOCK:
        with _at_broker():
            creds = prov.create(row.id, row.site_id)
            if not row.enabled:
                prov.set_enabled(creds.username, False)
        row.mqtt_username = creds.username
        agent_catalog.audit_credentials(session, key.name, now, row.id, "replaced")
        _commit_or_undo(session, prov, creds.username)
    return _credentials(creds)


@router.patch("/{agent_id}", responses=BROKER_RESPONSES)
def update_agent(
    agent_id: str, body: AgentUpdate, session: SessionDep, key: Manager, ctx: CtxDep
) -> AgentPublic:
    """Change an agent's description or receive bins, or enable / disable its MQTT client.

    ``{"enabled": false}`` disables the client at the broker: a connected agent is
    disconnected and cannot reconnect until ``{"enabled": true}``.
    """
    changes = body.changes()
    with LOCK:
        row = catalog.get_or_404(session, Agent, "agent", agent_id)
        enabled = changes.get("enabled")
        flip = enabled is not None and enabled != row.enabled
        row = agent_catalog.update_agent(
            session, agent_id, changes, key.name, ctx.clock.time_ms()
        )
        if flip:
            assert enabled is not None
            prov = Provisioner.from_settings(ctx.settings)
            if prov is None or row.mqtt_username is None:
                raise Conflict(
                    f"agent {agent_id!r} has no MQTT client provisioned by this server "
                    "(see docs/provisioning.md); disable it in the broker's password file",
                    field="enabled",
                )
            with _at_broker():
                prov.set_enabled(row.mqtt_username, enabled)
        session.commit()
    if flip:
        _state_changed(ctx, agent_id)
    return _one(ctx, session, row)


def _state_changed(ctx: ApiContext, agent_id: str) -> None:
    """Disabled or enabled: its alert is checked and its bins' tiles pushed now, not at
    the next full check (a disabled agent's open agent_offline alert resolves)."""
    for name in ("alerts", "live"):
        monitor = getattr(ctx, name, None)
        if monitor is not None:
            monitor.mark([], [agent_id])


@router.delete("/{agent_id}", status_code=204, responses=BROKER_RESPONSES)
def delete_agent(
    agent_id: str, session: SessionDep, key: Manager, ctx: CtxDep
) -> Response:
    """Remove an agent that feeds no bin; its traffic is refused from then on.

    Its provisioned MQTT client and role are deleted at the broker (a connected
    agent is disconnected).
    """
    with LOCK:
        username = agent_catalog.delete_agent(
            session, agent_id, key.name, ctx.clock.time_ms()
        )
        prov = Provisioner.from_settings(ctx.settings)
        if username is not None:
            if prov is None:
                raise Conflict(
                    f"agent {agent_id!r} has an MQTT client at the broker "
                    f"({username!r}) and this server no longer manages the broker "
                    "(JITSTOCK_MQTT_DYNSEC_USER); set it to delete the agent"
                )
            with _at_broker():
                prov.remove(username)
        session.commit()
    agents_changed(ctx)
    return Response(status_code=204)
