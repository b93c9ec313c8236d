"""Sites (plants): CRUD."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from jitstock.server.api import catalog
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.schemas import SiteCreate, SitePublic, SiteUpdate
from jitstock.server.db.models import Site

router = APIRouter(prefix="/api/v1/sites", tags=["sites"])


@router.get("")
def list_sites(session: ReadSessionDep, _key: Viewer) -> list[SitePublic]:
    """Every site."""
    return [
        SitePublic.model_validate(s)
        for s in session.scalars(select(Site).order_by(Site.id))
    ]


@router.get("/{site_id}")
def get_site(site_id: str, session: ReadSessionDep, _key: Viewer) -> SitePublic:
    """One site."""
    return SitePublic.model_validate(catalog.get_or_404(session, Site, "site", site_id))


@router.post("", status_code=201)
def create_site(
    body: SiteCreate, session: SessionDep, key: Manager, ctx: CtxDep
) -> SitePublic:
    """Add a site."""
    row = catalog.create_site(session, body, key.name, ctx.clock.time_ms())
    session.commit()
    return SitePublic.model_validate(row)


@router.patch("/{site_id}")
def update_site(
    site_id: str, body: SiteUpdate, session: SessionDep, key: Manager, ctx: CtxDep
) -> SitePublic:
    """Change a site."""
    row, _ = catalog.update_site(
        session, site_id, body.changes(), key.name, ctx.clock.time_ms()
    )
    session.commit()
    return SitePublic.model_validate(row)


@router.delete("/{site_id}", status_code=204)
def delete_site(
    site_id: str, session: SessionDep, key: Manager, ctx: CtxDep
) -> Response:
    """Remove a site no bin or order refers to."""
    catalog.delete_site(session, site_id, key.name, ctx.clock.time_ms())
    session.commit()
    return Response(status_code=204)
