"""Agent records: create, change and remove, with their checks and audit rows.

Like :mod:`jitstock.server.api.catalog`: functions change the session and never
commit; they raise FieldInvalid / Conflict / NotFound before changing anything.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from jitstock.protocol import RESERVED_AGENT_IDS
from jitstock.server.agents import ANY_BIN
from jitstock.server.api.agent_schemas import AgentCreate
from jitstock.server.api.catalog import get_or_404
from jitstock.server.api.errors import Conflict, FieldInvalid
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import Agent, AgentCursor, Bin, Site


def bin_counts(session: Session, agent_ids: list[str] | None = None) -> dict[str, int]:
    """How many bins each agent feeds (agents without bins are absent)."""
    stmt = (
        select(Bin.agent_id, func.count())
        .where(Bin.agent_id.is_not(None))
        .group_by(Bin.agent_id)
    )
    if agent_ids is not None:
        stmt = stmt.where(Bin.agent_id.in_(agent_ids))
    return {a: int(n) for a, n in session.execute(stmt) if a is not None}


def _check_receive_bins(
    session: Session, site_id: str, receive_bins: list[str] | None
) -> None:
    """Listed bins must exist in the agent's site ("*" and null need no check)."""
    if not receive_bins or receive_bins == [ANY_BIN]:
        return
    found: dict[str, str] = dict(
        session.execute(
            select(Bin.id, Bin.site_id).where(Bin.id.in_(receive_bins))
        ).all()
    )
    for bin_id in receive_bins:
        if bin_id not in found:
            raise FieldInvalid("receive_bins", f"bin {bin_id!r} does not exist")
        if found[bin_id] != site_id:
            raise FieldInvalid(
                "receive_bins",
                f"bin {bin_id!r} belongs to site {found[bin_id]!r}, not {site_id!r}",
            )


def _audit(
    session: Session,
    actor: str,
    now_ms: int,
    action: str,
    agent_id: str,
    detail: dict[str, Any],
) -> None:
    record_audit(
        session,
        at_ms=now_ms,
        actor=actor,
        action=action,
        entity="agent",
        entity_id=agent_id,
        detail=detail,
    )


def create_agent(session: Session, data: AgentCreate, actor: str, now_ms: int) -> Agent:
    """Add an agent; it is 'unknown' until it publishes."""
    if data.id in RESERVED_AGENT_IDS:
        raise FieldInvalid(
            "id",
            f"{data.id!r} is reserved: jit/v1/{{site}}/{data.id}/ holds the orders to "
            "suppliers (docs/protocol.md)",
        )
    if session.get(Agent, data.id) is not None:
        raise Conflict(f"agent {data.id!r} already exists", field="id")
    if session.get(Site, data.site_id) is None:
        raise FieldInvalid("site_id", f"site {data.site_id!r} does not exist")
    _check_receive_bins(session, data.site_id, data.receive_bins)
    values = data.model_dump()
    row = Agent(**values, online=False)
    session.add(row)
    session.flush()
    _audit(session, actor, now_ms, "agent.create", row.id, values)
    return row


def update_agent(
    session: Session, agent_id: str, changes: dict[str, Any], actor: str, now_ms: int
) -> Agent:
    """Change an agent's description or the bins it may receive into."""
    row = get_or_404(session, Agent, "agent", agent_id)
    if "receive_bins" in changes:
        _check_receive_bins(session, row.site_id, changes["receive_bins"])
    diff = {k: v for k, v in changes.items() if getattr(row, k) != v}
    if diff:
        detail = {k: {"from": getattr(row, k), "to": v} for k, v in diff.items()}
        for k, v in diff.items():
            setattr(row, k, v)
        _audit(session, actor, now_ms, "agent.update", agent_id, detail)
    return row


def delete_agent(
    session: Session, agent_id: str, actor: str, now_ms: int
) -> str | None:
    """Remove an agent that feeds no bin (move or delete its bins first).

    Returns its provisioned MQTT username (None: none), for the caller to remove
    at the broker before it commits.
    """
    row = get_or_404(session, Agent, "agent", agent_id)
    n = bin_counts(session, [agent_id]).get(agent_id, 0)
    if n:
        raise Conflict(f"agent {agent_id!r} still feeds {n} bins")
    username = row.mqtt_username
    session.execute(delete(AgentCursor).where(AgentCursor.agent_id == agent_id))
    session.delete(row)
    _audit(session, actor, now_ms, "agent.delete", agent_id, {})
    return username


def audit_credentials(
    session: Session, actor: str, now_ms: int, agent_id: str, what: str
) -> None:
    """Record that MQTT credentials were issued (never the password itself)."""
    _audit(session, actor, now_ms, "agent.credentials", agent_id, {"credentials": what})
