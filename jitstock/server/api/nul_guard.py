"""No NUL character reaches the database from a request.

PostgreSQL text cannot hold U+0000 (psycopg raises, which was a 500 for a user
name, a site name or an id in a path or query), and in SQLite a NUL in a name
cuts it short for most readers.  No jitstock id, name or code may contain one,
so a request that carries one is refused before it is handled:

- in the path: 404, as for any other id that does not exist;
- in the query string: 422, as for any other invalid parameter;
- in a JSON body: the request models refuse it (:func:`refuse_nul`), a 422.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

NUL_MESSAGE = "text may not contain the NUL character (U+0000)"
# Nesting of a request body walked at most (request bodies are bounded and flat).
_MAX_DEPTH = 32


def has_nul(value: Any, depth: int = 0) -> bool:
    """Whether a string anywhere in ``value`` (keys included) holds U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return any(
            has_nul(k, depth + 1) or has_nul(v, depth + 1) for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return any(has_nul(v, depth + 1) for v in value)
    return False


def refuse_nul(value: Any) -> Any:
    """A request model's ``field_validator("*", mode="before")``: the raw field value, or
    ValueError (the 422 names the field)."""
    if has_nul(value):
        raise ValueError(NUL_MESSAGE)
    return value


class NulGuard:
    """ASGI middleware refusing a NUL in the path (404) or the query string (422)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = _nul_in(scope)
            if where is not None:
                await _refuse(send, where)
                return
        await self.app(scope, receive, send)


def _nul_in(scope: Scope) -> str | None:
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    if "\x00" in scope.get("path", "") or b"%00" in raw_path.lower():
        return "path"
    if b"%00" in scope.get("query_string", b"") or b"\x00" in scope.get(
        "query_string", b""
    ):
        return "query"
    return None


async def _refuse(send: Send, where: str) -> None:
    body: dict[str, Any]
    if where == "path":
        status, body = 404, {"detail": "not found: the path holds a NUL character"}
    else:
        status = 422
        body = {
            "detail": [{"type": "value_error", "loc": ["query"], "msg": NUL_MESSAGE}]
        }
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
