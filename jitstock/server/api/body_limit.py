"""Request bodies are bounded before anything reads them.

A JSON body is read and parsed before the route checks the API key, so without a
bound anyone could make the server hold (and parse) any amount of memory.  This
ASGI middleware refuses a body larger than its route's limit with 413:

- at once when ``Content-Length`` says so, before a byte of the body is read;
- while streaming a chunked body, as soon as the bytes received pass the limit
  (the route then sees a disconnected client and changes nothing).

The CSV import routes (paths ending ``/import``) refuse files above
:data:`~jitstock.server.api.csvio.MAX_CSV_BYTES` themselves with their own message;
their limit here leaves room for that message and a multipart envelope.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jitstock.server.api.csvio import MAX_CSV_BYTES

# The largest legitimate JSON body is an agent's receive_bins (1,000 bin ids, about
# 70 kB); every other body is a handful of fields.  1 MiB leaves ample room.
MAX_JSON_BYTES = 1024 * 1024
# CSV imports: the route's own 5 MB limit answers first (with "split it"); the extra
# MiB is multipart framing and headroom.
MAX_IMPORT_BYTES = 6 * 1024 * 1024
assert MAX_IMPORT_BYTES > MAX_CSV_BYTES
IMPORT_SUFFIX = "/import"


def body_limit(path: str) -> int:
    """The largest request body, in bytes, accepted for ``path``."""
    return MAX_IMPORT_BYTES if path.endswith(IMPORT_SUFFIX) else MAX_JSON_BYTES


def too_large_message(limit: int) -> str:
    """The 413 detail for a body beyond ``limit`` bytes."""
    return f"request body larger than {limit} bytes ({limit // (1024 * 1024)} MiB), the limit of this route"


class BodyLimit:
    """ASGI middleware answering 413 to a request body beyond its route's limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a declared oversize body at once, an undeclared one when it passes the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not started:
                    refused = True
                    await _refuse(send, limit)
                    # the route sees a client gone: it stops reading and changes nothing
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer; whatever the route says after is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # the route's complaint about the cut-off body (ClientDisconnect) is moot


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed length itself
    return None


async def _refuse(send: Send, limit: int) -> None:
    payload = orjson.dumps({"detail": too_large_message(limit)})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                # the rest of the body is not read: the connection cannot be reused
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
