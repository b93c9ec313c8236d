"""REST API (FastAPI): master data, live levels, history, orders, keys, health and metrics.

``create_api(ctx)`` builds the app over the server's parts (see
:class:`~jitstock.server.api.context.ApiContext`); it holds no state of its own
beyond ``app.state.ctx``.  OpenAPI at ``/docs``.
"""

from __future__ import annotations

from fastapi import FastAPI

from jitstock.server.api.alert_schemas import register_alert_webhooks
from jitstock.server.api.allowed_methods import AllowedMethods
from jitstock.server.api.auth import ensure_bootstrap_key
from jitstock.server.api.body_limit import BodyLimit
from jitstock.server.api.context import ApiContext
from jitstock.server.api.errors import install_error_handlers
from jitstock.server.api.nul_guard import NulGuard
from jitstock.server.api.openapi_responses import declare_error_responses
from jitstock.server.api.routes import (  # issue 6
    agents,  # issue 9: agents as records
    audit,
    bin_actions,
    bins,
    csv,
    dashboard,
    dead_letters,  # issue 10: ingest dead letters
    docs,
    favicon,  # issue 14: the site icon
    history,
    keys,
    levels,
    ops,
    orders,
    sites,
    skus,
    sparkplug,  # issue 17: Sparkplug B metric mappings
    supplier_links,  # issue 13: pages behind e-mailed purchase orders' links
    supplier_loop,  # issue 5
    supplier_orders,
    suppliers,
)
from jitstock.server.api.routes import policy as policy_routes  # issue 4
from jitstock.server.api.security_headers import SecurityHeaders
from jitstock.server.api.webhook_schemas import register_webhooks

__all__ = ["ApiContext", "create_api"]

DESCRIPTION = """\
Live stock levels of factory bins and the supplier orders they trigger.

Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`. Roles: `viewer` reads,
`manager` also changes master data and acknowledges/delivers orders, `admin` also manages keys.
Times are epoch milliseconds; history queries also accept ISO 8601.

A `supplier` key is bound to one supplier (an admin makes one with
`POST /api/v1/suppliers/{supplier_id}/keys`) and ranks outside those roles. It reaches these
routes, and on them only its own supplier's orders and scorecard (another supplier's are
404, as if they did not exist):

* `GET /api/v1/orders`, `GET /api/v1/supplier/orders`, `GET /api/v1/orders/{order_id}`
* `GET /api/v1/orders/{order_id}/transitions`, `GET /api/v1/orders/{order_id}/receipts`,
  `GET /api/v1/orders/{order_id}/label.svg`, `GET /api/v1/orders/{order_id}/label.png`
* `POST /api/v1/orders/{order_id}/ack` (acknowledge, or change the promise),
  `POST /api/v1/orders/{order_id}/ship` (the ship notice),
  `POST /api/v1/orders/{order_id}/cancel-request` (only before the order ships)
* `GET /api/v1/suppliers/{supplier_id}/scorecard`,
  `GET /api/v1/suppliers/{supplier_id}/scorecard.csv`
* as any key: `GET /api/v1/me`, `POST /api/v1/logout`, `POST /api/v1/me/password`

Every other route that needs a key answers a supplier key 403, the plant's side of an
order among them: `POST /api/v1/orders/{order_id}/deliver`,
`POST /api/v1/orders/{order_id}/receive` and `POST /api/v1/receipts/{receipt_id}/inspection`.
"""


def create_api(ctx: ApiContext) -> FastAPI:
    """The FastAPI app over ctx; installs the bootstrap admin key (hashed) if one is configured."""
    # docs from local assets (routes/docs.py), not FastAPI's CDN-loading pages
    app = FastAPI(
        title="jitstock",
        description=DESCRIPTION,
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    # the last added is the outermost: the guard's refusals carry the security headers too
    app.add_middleware(AllowedMethods, routes=app.router.routes)
    app.add_middleware(NulGuard)
    app.add_middleware(BodyLimit)  # before any route reads (and parses) a body
    app.add_middleware(SecurityHeaders)
    app.state.ctx = ctx
    install_error_handlers(app)
    # csv before bins so /bins/import is never read as a bin id by a future catch-all route.
    for module in (
        sites,
        skus,
        suppliers,
        csv,
        bins,
        agents,
        history,
        levels,
        orders,
        keys,
        audit,
        ops,
    ):
        app.include_router(module.router)
    app.include_router(policy_routes.router)  # /bins/{id}/policy
    app.include_router(supplier_loop.router)  # ship, receive, inspect, scorecards
    app.include_router(supplier_orders.router)  # a supplier's own orders
    app.include_router(supplier_links.router)  # issue 13: e-mail suppliers' links
    app.include_router(bin_actions.router)  # issue 6: bin page actions
    app.include_router(dashboard.router)  # issue 6: page, floor, stream, alerts, KPIs
    app.include_router(dead_letters.router)  # issue 10: list and replay dead letters
    app.include_router(sparkplug.router)  # issue 17: Sparkplug B metric mappings
    app.include_router(docs.router)  # /docs and /redoc, no CDN
    app.include_router(favicon.router)  # issue 14: /favicon.ico, no 404
    register_webhooks(app)  # issue 13: what suppliers receive, under "webhooks"
    register_alert_webhooks(app)  # what the plant's alert webhook receives
    declare_error_responses(app)  # 401/403/404/409/422 in the OpenAPI document
    ensure_bootstrap_key(
        ctx.session_factory, ctx.settings.bootstrap_admin_key, ctx.clock.time_ms()
    )
    return app
