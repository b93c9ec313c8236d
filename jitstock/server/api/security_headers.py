"""Security headers on every response: no sniffing, no referrer, no framing; a strict CSP on HTML.

The dashboard loads only its own files (no inline script, no CDN), so its
Content-Security-Policy allows 'self' and nothing else.  The API docs pages
(Swagger UI, ReDoc) are served from local assets too; ReDoc injects <style>
elements and runs its search in a blob: worker, so those pages also allow
inline styles and blob: workers, and still no inline script.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_PREFIXES = ("/docs", "/redoc")

# On every response: a JSON body must never be sniffed into HTML, URLs (which may
# carry ids) never leak to other sites, no page is framed (clickjacking).
_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def csp_for(path: str) -> str:
    """The Content-Security-Policy of an HTML page at ``path``."""
    return DOCS_CSP if path.startswith(DOCS_PREFIXES) else DASHBOARD_CSP


class SecurityHeaders:
    """ASGI middleware adding the headers above (streaming responses pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the response start message of every HTTP request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _ALWAYS if k not in present]
                ctype = next(
                    (v for k, v in headers if k.lower() == b"content-type"), b""
                )
                if ctype.startswith(b"text/html"):
                    headers.append((b"content-security-policy", csp_for(path).encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
