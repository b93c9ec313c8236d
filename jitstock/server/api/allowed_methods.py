"""A 405 answer names every method its resource supports (RFC 9110 §15.5.6).

FastAPI registers one route per path and method; Starlette answers a request whose
path matches but whose method does not with the ``Allow`` header of the *first*
route of that path only, so ``PUT /api/v1/bins/A-01`` said ``Allow: GET`` although
the resource also takes PATCH and DELETE.  A client (or a generated SDK) that reads
``Allow`` learned the wrong methods.  This middleware rewrites the header of a 405
with the union of the methods of every route whose path matches.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# the methods a 405's Allow may name, in this order (the API uses no others)
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """The methods some route fully matches for the request's path.

    Asked through each route's public ``matches`` (FastAPI nests the routers it
    includes, so the routes' own method sets are not all at hand)."""
    out = []
    for method in _METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in routes):
            out.append(method)
    return out


class AllowedMethods:
    """ASGI middleware: the ``Allow`` header of a 405 lists all of the path's methods."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; fix the headers of a 405 answer on the way out."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_fixed(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                methods = allowed_methods(self.routes, scope)
                if methods:
                    headers = [
                        (k, v)
                        for k, v in message.get("headers", [])
                        if k.lower() != b"allow"
                    ]
                    headers.append((b"allow", ", ".join(methods).encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_fixed)
