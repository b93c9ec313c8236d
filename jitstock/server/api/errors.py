"""API errors and their translation to HTTP (the only place that knows status codes).

::

    ApiError                   anything the API layer raises on purpose
    ├── Unauthorized    401    no API key, or an unknown or revoked one
    ├── Forbidden       403    the key's role does not allow this
    ├── NotFound        404    an entity id that does not exist
    ├── TooLarge        413    an upload beyond the size limit
    ├── BadMediaType    415    an upload in a format the route does not read
    ├── Conflict        409    the request is valid but the current state forbids it
    └── FieldInvalid    422    a field's value is wrong; names the field
        └── CsvInvalid  422    an import rejected whole; names every bad row and column

The supplier loop's own refusals (:mod:`jitstock.server.supplier`) become these in
``supply_errors()``.

Every body has FastAPI's shape, ``{"detail": ...}``: a string for 404/409 and a
list of ``{"loc", "msg", "type"}`` for 422, where ``msg`` starts with the field
name so a human reading only the messages knows what to fix.  Request values are
never echoed back (a rejected webhook secret must not land in a proxy log).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from jitstock.server.supplier import IllegalTransition, InvalidRequest, OrderNotFound
from jitstock.server.tsdb.errors import TsdbError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Base of errors the API reports to the client."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body of the response."""
        return {"detail": self.message}


class Unauthorized(ApiError):
    """No usable API key."""

    status = 401


class Forbidden(ApiError):
    """A key whose role is too low for the request."""

    status = 403


class NotFound(ApiError):
    """An entity that does not exist."""

    status = 404

    def __init__(self, entity: str, entity_id: str) -> None:
        super().__init__(f"{entity} {entity_id!r} not found")
        self.entity = entity
        self.entity_id = entity_id


class TooLarge(ApiError):
    """A request body beyond the route's limit."""

    status = 413


class BadMediaType(ApiError):
    """A request body in a format the route does not accept."""

    status = 415


class Conflict(ApiError):
    """A request the current state forbids (illegal transition, entity in use, duplicate)."""

    status = 409

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class FieldInvalid(ApiError):
    """A bad value of one field of the request."""

    status = 422

    def __init__(
        self,
        field: str,
        message: str,
        *,
        where: str = "body",
        kind: str = "value_error",
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.where = where
        self.kind = kind

    def body(self) -> dict[str, Any]:
        """FastAPI's validation shape, one entry."""
        return {
            "detail": [
                {
                    "loc": [self.where, self.field],
                    "msg": self.message,
                    "type": self.kind,
                }
            ]
        }


@dataclass(frozen=True, slots=True)
class CsvProblem:
    """One bad cell (or row, when column is None) of an imported CSV file."""

    row: int
    column: str | None
    message: str

    def text(self) -> str:
        """Human form: 'row 3, column unit_weight_g: ...'."""
        where = f"row {self.row}" if self.row else "header"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.message}"


class CsvInvalid(FieldInvalid):
    """A CSV import rejected whole because of these problems."""

    def __init__(self, problems: Sequence[CsvProblem]) -> None:
        self.problems = list(problems)
        first = self.problems[0].text() if self.problems else "empty"
        super().__init__("file", f"{len(self.problems)} problem(s); first: {first}")

    def body(self) -> dict[str, Any]:
        """One entry per problem; loc is ["csv", row, column]."""
        return {
            "detail": [
                {
                    "loc": ["csv", p.row, p.column or ""],
                    "msg": p.text(),
                    "type": "csv_invalid",
                }
                for p in self.problems
            ],
            "message": "nothing was imported: " + self.message,
        }


@contextmanager
def supply_errors() -> Iterator[None]:
    """Supply errors to HTTP errors: no such order 404, a forbidden transition 409, a bad value 422."""
    try:
        yield
    except OrderNotFound as exc:
        raise NotFound("order", exc.order_id) from exc
    except IllegalTransition as exc:
        raise Conflict(str(exc)) from exc
    except InvalidRequest as exc:
        raise FieldInvalid(exc.field, exc.message, where=exc.where) from exc


def clean_message(msg: str) -> str:
    """A pydantic message without its 'Value error, ' preamble."""
    return msg.removeprefix("Value error, ")


# A 422 lists at most this many problems, and a field name at most this long: a body
# of 100,000 unknown fields (or one field named with a megabyte) gets a short answer,
# not one several times the size of the request.
MAX_LISTED_ERRORS = 20
MAX_NAME_CHARS = 120


def _short(part: Any) -> Any:
    if isinstance(part, str) and len(part) > MAX_NAME_CHARS:
        return part[:MAX_NAME_CHARS] + "…"
    return part


def readable_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic error dicts without echoed input, each msg prefixed with its field path.

    The first :data:`MAX_LISTED_ERRORS` are listed; one more entry says how many
    were left out.
    """
    out = []
    for e in errors[:MAX_LISTED_ERRORS]:
        loc = [_short(x) for x in e.get("loc", ())]
        # The path inside the body/query, e.g. "unit_weight_g" or "items.2.qty"; "body" alone says nothing.
        field = (
            ".".join(str(x) for x in loc[1:])
            if len(loc) > 1
            else ".".join(str(x) for x in loc)
        )
        msg = clean_message(str(e.get("msg", "invalid")))
        if e.get("type") == "missing":
            msg = "field required"
        elif e.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif e.get("type") == "json_invalid":
            # loc is ("body", character position): the field is the body itself
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            field = "body"
            msg = f"not valid JSON{where}: " + str(e.get("ctx", {}).get("error", msg))
        msg = f"{_short(field)}: {msg}" if field else msg
        out.append(
            {
                "loc": loc,
                "msg": msg if len(msg) <= 500 else msg[:500] + "…",
                "type": e.get("type", "value_error"),
            }
        )
    left = len(errors) - MAX_LISTED_ERRORS
    if left > 0:
        out.append(
            {
                "loc": ["request"],
                "msg": f"and {left} more problem{'s' if left > 1 else ''} not listed",
                "type": "more_errors",
            }
        )
    return out


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": readable_errors(exc.errors())}, status_code=422)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # Our code raises ApiError; a bare 400 is the framework failing to read the
        # body (bytes that are not UTF-8 JSON): a wrong value of the body, so 422.
        return JSONResponse(
            {
                "detail": [
                    {
                        "loc": ["body"],
                        "msg": "body: not valid JSON (send UTF-8 text)",
                        "type": "json_invalid",
                    }
                ]
            },
            status_code=422,
        )
    return await http_exception_handler(request, exc)


async def _number_out_of_range(_request: Request, exc: Exception) -> JSONResponse:
    # A safety net: every number a route takes should be bounded in its schema; one
    # that is not and overflows the database's 64-bit INTEGER is the client's error.
    log.warning("unbounded number reached the database: %s", exc)
    return JSONResponse(
        {
            "detail": [
                {
                    "loc": ["request"],
                    "msg": "a number in the request is out of range (at most 2**63 - 1)",
                    "type": "value_error",
                }
            ]
        },
        status_code=422,
    )


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    # Races the explicit checks lost (two clients creating the same id at once).
    log.info("integrity error turned into 409: %s", exc)
    return JSONResponse(
        {
            "detail": "conflicts with existing data (duplicate id or value, or entity in use)"
        },
        409,
    )


async def _tsdb_error(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("time series store error: %s", exc)
    return JSONResponse(
        {"detail": f"time series store unavailable: {exc}"}, status_code=503
    )


async def _db_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("state DB error: %s", exc)
    return JSONResponse(
        {"detail": "state database unavailable, try again"}, status_code=503
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the translations above on an app."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(OverflowError, _number_out_of_range)
    app.add_exception_handler(OperationalError, _db_unavailable)
    app.add_exception_handler(TsdbError, _tsdb_error)
