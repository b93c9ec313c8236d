"""The site icon: /favicon.ico (what browsers ask for unprompted) and /favicon.svg, from files.

Both ship in the package beside the dashboard page (``jitstock/server/web``);
no sign-in, as for the page itself, and cached for a day.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(tags=["dashboard"])

WEB = resources.files("jitstock.server") / "web"
ICONS = {"favicon.ico": "image/x-icon", "favicon.svg": "image/svg+xml"}
# A day: the icon changes with a release, not while a tab is open.
ICON_CACHE_S = 86_400


def _icon(name: str) -> Response:
    return Response(
        (WEB / name).read_bytes(),
        media_type=ICONS[name],
        headers={"Cache-Control": f"public, max-age={ICON_CACHE_S}"},
    )


@router.get("/favicon.ico", include_in_schema=False)
def favicon_ico() -> Response:
    """The icon browsers request on every page load."""
    return _icon("favicon.ico")


@router.get("/favicon.svg", include_in_schema=False)
def favicon_svg() -> Response:
    """The same icon as SVG, for a ``<link rel="icon">``."""
    return _icon("favicon.svg")
