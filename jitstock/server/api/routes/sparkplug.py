"""Sparkplug B metric mappings (issue 17): which gateway metric feeds which bin.

Managers write, viewers read.  A mapping takes effect within a second on this
server (the bridge reloads after each change) and within ten on the others.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from jitstock.server.api import catalog
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.errors import Conflict, FieldInvalid
from jitstock.server.api.schemas import RowId
from jitstock.server.api.sparkplug_schemas import (
    SparkplugMappingPublic,
    SparkplugMappingPut,
    SparkplugNodePublic,
    SparkplugStatus,
)
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import Bin
from jitstock.server.db.sparkplug_models import SparkplugMapping
from jitstock.server.sparkplug import mappings

router = APIRouter(prefix="/api/v1/sparkplug", tags=["sparkplug"])


@router.get("/mappings")
def list_mappings(
    session: ReadSessionDep, _key: Viewer
) -> list[SparkplugMappingPublic]:
    """Every mapping, by group, edge node, device and metric."""
    rows = session.scalars(
        select(SparkplugMapping).order_by(
            SparkplugMapping.group_id,
            SparkplugMapping.edge_node,
            SparkplugMapping.device,
            SparkplugMapping.metric,
        )
    )
    return [SparkplugMappingPublic.model_validate(r) for r in rows]


@router.get("/mappings/{mapping_id}")
def get_mapping(
    mapping_id: RowId, session: ReadSessionDep, _key: Viewer
) -> SparkplugMappingPublic:
    """One mapping."""
    row = catalog.get_or_404(session, SparkplugMapping, "mapping", mapping_id)
    return SparkplugMappingPublic.model_validate(row)


@router.put(
    "/mappings",
    responses={
        201: {"model": SparkplugMappingPublic, "description": "a new mapping"},
    },
)
def put_mapping(
    body: SparkplugMappingPut,
    response: Response,
    session: SessionDep,
    key: Manager,
    ctx: CtxDep,
) -> SparkplugMappingPublic:
    """Map a metric to a bin (201), or change where an already mapped metric goes (200).

    The bin must be fed by an agent: the agent's record carries the gateway's online
    state, its bins' sensor state and its site.
    """
    target = session.get(Bin, body.bin_id)
    if target is None:
        raise FieldInvalid("bin_id", f"no bin {body.bin_id!r}")
    if target.agent_id is None:
        raise FieldInvalid(
            "bin_id",
            f"bin {body.bin_id!r} has no agent: give it one (PATCH /api/v1/bins/"
            f"{body.bin_id} with agent_id) for the gateway's online state",
        )
    bridge = getattr(ctx, "sparkplug", None)
    if bridge is not None and body.group_id not in bridge.groups:
        # accepted, it would wait for data that never comes (nothing subscribes to it)
        raise FieldInvalid(
            "group_id",
            f"group {body.group_id!r} is not followed by this server "
            f"(JITSTOCK_SPARKPLUG_GROUPS: {', '.join(bridge.groups)}); add it there "
            "and restart the server, or correct the group id (case matters)",
        )
    now = ctx.clock.time_ms()
    row = mappings.find(
        session, body.group_id, body.edge_node, body.device, body.metric
    )
    created = row is None
    if row is None:
        row = SparkplugMapping(
            group_id=body.group_id,
            edge_node=body.edge_node,
            device=body.device,
            metric=body.metric,
        )
        session.add(row)
    row.bin_id = body.bin_id
    row.unit = body.unit
    row.factor = body.factor
    row.updated_ms = now
    row.updated_by = key.name
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict("this metric was mapped at the same moment; try again") from None
    record_audit(
        session,
        at_ms=now,
        actor=key.name,
        action="sparkplug_mapping.create" if created else "sparkplug_mapping.update",
        entity="sparkplug_mapping",
        entity_id=str(row.id),
        detail=body.model_dump(),
    )
    session.commit()
    _changed(ctx)
    response.status_code = 201 if created else 200
    return SparkplugMappingPublic.model_validate(row)


@router.delete("/mappings/{mapping_id}", status_code=204)
def delete_mapping(
    mapping_id: RowId, session: SessionDep, key: Manager, ctx: CtxDep
) -> Response:
    """Stop feeding a bin from this metric."""
    row = catalog.get_or_404(session, SparkplugMapping, "mapping", mapping_id)
    detail = SparkplugMappingPublic.model_validate(row).model_dump()
    session.delete(row)
    record_audit(
        session,
        at_ms=ctx.clock.time_ms(),
        actor=key.name,
        action="sparkplug_mapping.delete",
        entity="sparkplug_mapping",
        entity_id=str(mapping_id),
        detail=detail,
    )
    session.commit()
    _changed(ctx)
    return Response(status_code=204)


@router.get("/status")
def sparkplug_status(_key: Viewer, ctx: CtxDep) -> SparkplugStatus:
    """Whether this server follows Sparkplug B, and each mapped edge node's state."""
    bridge = getattr(ctx, "sparkplug", None)
    if bridge is None:
        return SparkplugStatus(enabled=False, groups=[], connected=False, nodes=[])
    return SparkplugStatus(
        enabled=True,
        groups=list(bridge.groups),
        connected=bridge.connection.connected.is_set(),
        nodes=[SparkplugNodePublic.model_validate(v) for v in bridge.status()],
    )


def _changed(ctx: CtxDep) -> None:
    """Tell this server's bridge (when Sparkplug ingest is on) to reload the mappings."""
    bridge = getattr(ctx, "sparkplug", None)
    if bridge is not None:
        bridge.mappings_changed()
