"""CSV export and all-or-nothing import of sites, SKUs, suppliers and bins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from jitstock.server.api.context import ApiContext
from jitstock.server.api.csv_import import (
    SPECS,
    CsvSpec,
    ImportOutcome,
    export_entities,
    import_entities,
)
from jitstock.server.api.csvio import MAX_CSV_BYTES
from jitstock.server.api.deps import CtxDep, Manager, Viewer
from jitstock.server.api.effects import bins_changed
from jitstock.server.api.errors import BadMediaType, FieldInvalid, TooLarge
from jitstock.server.api.schemas import ImportResult
from jitstock.server.db.session import transaction

router = APIRouter(prefix="/api/v1", tags=["csv"])

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
_RAW_TYPES = (
    "text/csv",
    "text/plain",
    "application/csv",
    "application/vnd.ms-excel",
    "application/octet-stream",
)
_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


async def read_upload(request: Request) -> bytes:
    """The CSV bytes of a text/csv body or of the 'file' part of a multipart form (size-capped)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10)
        except HTTPException as exc:  # the framework's 400 would read "not valid JSON"
            raise FieldInvalid(
                "file", f"multipart upload not readable: {exc.detail}"
            ) from None
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise FieldInvalid(
                    "file", "multipart upload needs a file part named 'file'"
                )
            data = await upload.read(MAX_CSV_BYTES + 1)
        finally:
            await form.close()
    elif ctype in _RAW_TYPES or not ctype:
        chunks = bytearray()
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > MAX_CSV_BYTES:
                break
        data = bytes(chunks)
    else:
        raise BadMediaType(
            f"content-type {ctype!r}: send text/csv, or multipart/form-data with a 'file' part"
        )
    if len(data) > MAX_CSV_BYTES:
        raise TooLarge(f"file larger than {MAX_CSV_BYTES} bytes; split it")
    return data


def _run_import(
    ctx: ApiContext, spec: CsvSpec, data: bytes, actor: str
) -> ImportOutcome:
    return import_entities(ctx.session_factory, spec, data, actor, ctx.clock.time_ms())


def _exporter(spec: CsvSpec) -> Callable[[CtxDep, Viewer], Response]:
    def export(ctx: CtxDep, key: Viewer) -> Response:
        with transaction(ctx.session_factory, readonly=True) as session:
            text = export_entities(session, spec, reveal=key.allows("admin"))
        headers = {"Content-Disposition": f'attachment; filename="{spec.entity}.csv"'}
        return Response(text, media_type=CSV_MEDIA_TYPE, headers=headers)

    export.__doc__ = (
        f"Every {spec.entity[:-1]} as CSV (header row, one row per {spec.entity[:-1]})."
    )
    return export


def _importer(
    spec: CsvSpec,
) -> Callable[[Request, CtxDep, Manager], Awaitable[ImportResult]]:
    async def import_csv(request: Request, ctx: CtxDep, key: Manager) -> ImportResult:
        data = await read_upload(request)
        outcome = await run_in_threadpool(_run_import, ctx, spec, data, key.name)
        if spec.entity in ("bins", "skus"):
            bins_changed(ctx, outcome.order_ids)
        return outcome.result

    import_csv.__doc__ = f"Create or update {spec.entity} from CSV (by id); all rows or none, errors name row and column."
    return import_csv


for _spec in SPECS.values():
    router.add_api_route(
        f"/{_spec.entity}.csv",
        _exporter(_spec),
        methods=["GET"],
        name=f"export_{_spec.entity}",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}},
    )
    router.add_api_route(
        f"/{_spec.entity}/import",
        _importer(_spec),
        methods=["POST"],
        name=f"import_{_spec.entity}",
        openapi_extra=_IMPORT_BODY,
        responses={
            413: {"description": f"the file is larger than {MAX_CSV_BYTES} bytes"},
            415: {"description": "neither text/csv nor multipart/form-data"},
        },
    )
