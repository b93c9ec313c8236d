"""The error answers each operation declares in the OpenAPI document.

Every status code an operation can answer is in its ``responses`` (clients and
schemathesis check against them).  Rather than repeating the same list on every
route, :func:`declare_error_responses` derives it from the generated document:

* 401 and 403 when the operation needs a key (it has a ``security`` requirement);
* 404 when its path has an id in it;
* 409 when it changes something (any method but GET);
* 413 when it takes a request body (:mod:`~jitstock.server.api.body_limit`);
* 422 when it takes input (parameters or a body) or changes something.

A route's own ``responses=`` entries win (their descriptions); this only fills in
what is missing, including the body schema of a route's own error entry without one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_BODY = "ErrorBody"
VALIDATION_BODY = "HTTPValidationError"  # FastAPI's own, for 422

_ERROR_SCHEMA = {
    "title": ERROR_BODY,
    "type": "object",
    "properties": {"detail": {"type": "string", "title": "Detail"}},
    "required": ["detail"],
    "description": "What went wrong, for a human.",
}

DESCRIPTIONS = {
    401: "no API key, or an unknown, expired or revoked one",
    403: "the key's role does not allow this",
    404: "an id in the path does not exist",
    409: "the current state forbids this (illegal transition, entity in use, duplicate)",
    413: "the request body is larger than the route's limit (1 MiB; CSV imports 5 MB)",
    415: "the request body is in a format the route does not read",
    422: "a value is wrong; each message starts with the field's name",
}


def error_codes(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    """The error status codes an operation can answer."""
    codes = []
    if operation.get("security"):
        codes += [401, 403]
    if "{" in path:
        codes.append(404)
    changes = method != "get"
    if changes:
        codes.append(409)
    if operation.get("requestBody"):
        codes.append(413)
    if changes or operation.get("parameters") or operation.get("requestBody"):
        codes.append(422)
    return codes


def _response(code: int) -> dict[str, Any]:
    schema = VALIDATION_BODY if code == 422 else ERROR_BODY
    return {
        "description": DESCRIPTIONS[code],
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
        },
    }


def add_error_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with every operation's missing error responses filled in."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(ERROR_BODY, _ERROR_SCHEMA)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for code in error_codes(path, method, operation):
                if code == 422 and VALIDATION_BODY not in components:
                    continue  # no route takes validated input: nothing can answer 422
                responses.setdefault(str(code), _response(code))
            for code in DESCRIPTIONS:
                own = responses.get(str(code))
                if own is not None and "content" not in own:
                    own["content"] = _response(code)["content"]
    return schema


def declare_error_responses(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document declare the error responses of every operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_error_responses(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
