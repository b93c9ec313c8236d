"""API docs (Swagger UI on /docs, ReDoc on /redoc) from locally installed assets.

The assets come from the ``fastapi-offline`` package (Swagger UI 5 and ReDoc 2
bundles), so the docs work on a shop-floor network without internet and load
nothing unpinned from a CDN; the pages have no inline script (see
:mod:`jitstock.server.api.security_headers`).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from jitstock.server.api.errors import NotFound

router = APIRouter(include_in_schema=False)

_VENDOR = resources.files("fastapi_offline") / "static"
_OWN = resources.files("jitstock.server") / "web" / "docs"
ASSETS = {
    "swagger-ui-bundle.js": (_VENDOR, "text/javascript"),
    "swagger-ui.css": (_VENDOR, "text/css"),
    "redoc.standalone.js": (_VENDOR, "text/javascript"),
    "favicon.png": (_VENDOR, "image/png"),
    "swagger-init.js": (_OWN, "text/javascript"),
}
# The bundles change only with the installed package; a day of caching is plenty.
CACHE = "public, max-age=86400"

SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jitstock API</title>
<link rel="icon" href="/docs/assets/favicon.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/swagger-init.js"></script>
</body></html>
"""
REDOC_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jitstock API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/docs/assets/favicon.png"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/docs/assets/redoc.standalone.js"></script>
</body></html>
"""


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    """Swagger UI over /openapi.json."""
    return HTMLResponse(SWAGGER_PAGE)


@router.get("/redoc")
def redoc() -> HTMLResponse:
    """ReDoc over /openapi.json."""
    return HTMLResponse(REDOC_PAGE)


@router.get("/docs/assets/{name}")
def asset(name: str) -> Response:
    """One file of the docs pages, from the installed packages."""
    if name not in ASSETS:
        raise NotFound("asset", name)
    folder, media_type = ASSETS[name]
    return Response(
        (folder / name).read_bytes(),
        media_type=media_type,
        headers={"Cache-Control": CACHE},
    )
