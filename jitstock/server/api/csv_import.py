"""CSV import and export of sites, SKUs, suppliers and bins: all rows or none.

Each row is an upsert keyed by ``id``: a new id is created with the Create
model's rules, an existing one is patched with the columns the file has (an
empty cell clears a nullable field; it is an error for a required one).  Every
row is checked in its own savepoint through the same catalog functions the JSON
API uses, so every bad row is reported, not just the first, and if any row is
bad the whole import is rolled back.  Webhook secrets are never in a CSV file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jitstock.server.api import catalog
from jitstock.server.api.csvio import read_csv, write_csv
from jitstock.server.api.errors import (
    ApiError,
    Conflict,
    CsvInvalid,
    CsvProblem,
    FieldInvalid,
    clean_message,
)
from jitstock.server.api.schemas import (
    BinCreate,
    BinUpdate,
    ImportResult,
    Patch,
    SiteCreate,
    SiteUpdate,
    SkuCreate,
    SkuUpdate,
    SupplierCreate,
    SupplierUpdate,
)
from jitstock.server.db.models import Base, Bin, Order, Site, Sku, Supplier
from jitstock.server.redact import REDACTED_URL_REFUSED, foreign_redacted, redact_url

# Report this many problems at most: enough to fix a sheet, bounded for a garbage upload.
MAX_PROBLEMS = 100


@dataclass(frozen=True)
class CsvSpec:
    """How one entity maps to CSV columns and to the catalog functions."""

    entity: str  # the URL word: bins, skus, suppliers, sites
    model: type[Base]
    columns: tuple[str, ...]
    create_model: type[BaseModel]
    update_model: type[Patch]
    create: Callable[[Session, Any, str, int], Any]
    update: Callable[[Session, str, dict[str, Any], str, int], tuple[Any, ...]]


def _create_supplier(
    session: Session, data: SupplierCreate, actor: str, now_ms: int
) -> str:
    return catalog.create_supplier(session, data, actor, now_ms)[1]


SPECS: dict[str, CsvSpec] = {
    s.entity: s
    for s in (
        CsvSpec(
            "sites",
            Site,
            tuple(SiteCreate.model_fields),
            SiteCreate,
            SiteUpdate,
            catalog.create_site,
            catalog.update_site,
        ),
        CsvSpec(
            "skus",
            Sku,
            tuple(SkuCreate.model_fields),
            SkuCreate,
            SkuUpdate,
            catalog.create_sku,
            catalog.update_sku,
        ),
        CsvSpec(
            "suppliers",
            Supplier,
            # every field a supplier is created with (address book, e-mail channel), but the
            # secret: a sheet is mailed around, the secret is shown once and rotated by PATCH
            tuple(f for f in SupplierCreate.model_fields if f != "webhook_secret"),
            SupplierCreate,
            SupplierUpdate,
            _create_supplier,
            catalog.update_supplier,
        ),
        CsvSpec(
            "bins",
            Bin,
            tuple(f for f in BinCreate.model_fields),
            BinCreate,
            BinUpdate,
            catalog.create_bin,
            catalog.update_bin,
        ),
    )
}


def export_entities(session: Session, spec: CsvSpec, *, reveal: bool = False) -> str:
    """Every row of an entity as CSV, ordered by id; webhook URLs redacted unless reveal."""
    rows = session.scalars(select(spec.model).order_by(spec.model.id))  # type: ignore[attr-defined]

    def cells(r: Any) -> dict[str, Any]:
        out = {c: getattr(r, c) for c in spec.columns}
        if not reveal and out.get("webhook_url"):
            out["webhook_url"] = redact_url(out["webhook_url"])
        return out

    return write_csv(spec.columns, (cells(r) for r in rows))


def _problems_from_validation(row: int, exc: ValidationError) -> list[CsvProblem]:
    out = []
    for e in exc.errors():
        column = str(e["loc"][0]) if e["loc"] else None
        msg = (
            "required for a new row"
            if e["type"] == "missing"
            else clean_message(e["msg"])
        )
        out.append(CsvProblem(row, column, msg))
    return out


def _problem_from_api_error(row: int, exc: ApiError) -> CsvProblem:
    column = exc.field if isinstance(exc, (FieldInvalid, Conflict)) else None
    message = exc.message
    if column and message.startswith(f"{column}: "):
        message = message[len(column) + 2 :]
    return CsvProblem(row, column, message)


@dataclass
class ImportOutcome:
    """What an import did, plus orders the changed bins created (to wake the dispatcher)."""

    result: ImportResult
    orders: list[Order]


def import_entities(
    session: Session, spec: CsvSpec, data: bytes, actor: str, now_ms: int
) -> ImportOutcome:
    """Apply a CSV file in the caller's transaction, or raise CsvInvalid having changed nothing."""
    rows = read_csv(data, spec.columns, required_columns=("id",))
    problems: list[CsvProblem] = []
    first_row_of: dict[str, int] = {}
    result = ImportResult(entity=spec.entity, created=0, updated=0, unchanged=0)
    orders: list[Order] = []
    for n, cells in rows:
        if len(problems) >= MAX_PROBLEMS:
            break
        entity_id = cells["id"]
        if entity_id in first_row_of:
            problems.append(
                CsvProblem(
                    n,
                    "id",
                    f"{entity_id!r} already appears in row {first_row_of[entity_id]}",
                )
            )
            continue
        first_row_of[entity_id] = n
        problems.extend(
            _apply_row(session, spec, n, cells, actor, now_ms, result, orders)
        )
    if problems:
        session.rollback()
        raise CsvInvalid(problems[:MAX_PROBLEMS])
    return ImportOutcome(result, orders)


def _apply_row(
    session: Session,
    spec: CsvSpec,
    n: int,
    cells: dict[str, str],
    actor: str,
    now_ms: int,
    result: ImportResult,
    orders: list[Order],
) -> Sequence[CsvProblem]:
    entity_id = cells["id"]
    try:
        with session.begin_nested():
            existing = session.get(spec.model, entity_id) if entity_id else None
            current_url = getattr(existing, "webhook_url", None)
            if foreign_redacted(cells.get("webhook_url"), current_url):
                return [CsvProblem(n, "webhook_url", REDACTED_URL_REFUSED)]
            if existing is None:
                values = {k: v for k, v in cells.items() if v != ""}
                data = spec.create_model.model_validate(values, strict=False)
                secret = spec.create(session, data, actor, now_ms)
                if spec.entity == "suppliers":
                    result.webhook_secrets[entity_id] = secret
                result.created += 1
            else:
                if (
                    current_url is not None
                    and cells.get("webhook_url") == redact_url(current_url)
                    and cells["webhook_url"] != current_url
                ):
                    # a redacted export imported back: the URL stays as it is
                    cells = {k: v for k, v in cells.items() if k != "webhook_url"}
                patch = spec.update_model.model_validate(
                    {
                        k: (v if v != "" else None)
                        for k, v in cells.items()
                        if k != "id"
                    },
                    strict=False,  # cells are text; the models are strict for JSON
                )
                _, changed, *rest = spec.update(
                    session, entity_id, patch.changes(), actor, now_ms
                )
                if rest and rest[0] is not None:
                    orders.append(rest[0])
                if changed:
                    result.updated += 1
                else:
                    result.unchanged += 1
            session.flush()
    except ValidationError as exc:
        return _problems_from_validation(n, exc)
    except ApiError as exc:
        return [_problem_from_api_error(n, exc)]
    except IntegrityError as exc:
        return [CsvProblem(n, None, f"conflicts with existing data: {exc.orig}")]
    return ()
