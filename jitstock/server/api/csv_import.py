"""CSV import and export of sites, SKUs, suppliers and bins: all rows or none.

Each row is an upsert keyed by ``id``: a new id is created with the Create
model's rules, an existing one is patched with the columns the file has (an
empty cell clears a nullable field; it is an error for a required one).  Webhook
secrets are never in a CSV file.

An import is checked whole before anything is written, so every bad row is
reported, not just the first, and a refused import changes nothing.  The checks
are the JSON API's (the models, and the catalog's reference, channel and barcode
rules with their messages), run row after row in memory against a snapshot that a
few queries load: the rows of the sheet's ids, and what the rows refer to.  They
run first in a read transaction, which on SQLite takes no write lock; then once
more, against a snapshot read again inside the write transaction (on PostgreSQL
with the sheet's existing rows locked), so a change that landed in between is
judged too.  The sheet is then written in bulk: one UPDATE and one INSERT
statement executed over all rows, and the audit rows likewise.  On SQLite a
5,000-row sheet held the write lock for ~26 s, row by row in savepoints, and every
reading waited for it; see README.md "Measured".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import BaseModel, ValidationError
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jitstock.server.api import catalog
from jitstock.server.api.bin_refs import check_bin_refs
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
from jitstock.server.db.models import (
    Agent,
    AuditLog,
    Base,
    Bin,
    Site,
    Sku,
    Supplier,
)
from jitstock.server.db.secrets import new_webhook_secret
from jitstock.server.db.session import SessionFactory, is_postgresql, transaction
from jitstock.server.position import Position, positions
from jitstock.server.redact import REDACTED_URL_REFUSED, foreign_redacted, redact_url

# Report this many problems at most: enough to fix a sheet, bounded for a garbage upload.
MAX_PROBLEMS = 100
# Ids per "id IN (...)" query: below SQLite's oldest limit of 999 bound parameters.
ID_CHUNK = 900


@dataclass(frozen=True)
class CsvSpec:
    """How one entity maps to CSV columns and to the catalog functions."""

    entity: str  # the URL word: bins, skus, suppliers, sites
    model: type[Base]
    columns: tuple[str, ...]
    create_model: type[BaseModel]
    update_model: type[Patch]
    audit_entity: str  # the catalog's audit name: site, sku, supplier, bin


SPECS: dict[str, CsvSpec] = {
    s.entity: s
    for s in (
        CsvSpec(
            "sites",
            Site,
            tuple(SiteCreate.model_fields),
            SiteCreate,
            SiteUpdate,
            "site",
        ),
        CsvSpec(
            "skus",
            Sku,
            tuple(SkuCreate.model_fields),
            SkuCreate,
            SkuUpdate,
            "sku",
        ),
        CsvSpec(
            "suppliers",
            Supplier,
            # every field a supplier is created with (address book, e-mail channel), but the
            # secret: a sheet is mailed around, the secret is shown once and rotated by PATCH
            tuple(f for f in SupplierCreate.model_fields if f != "webhook_secret"),
            SupplierCreate,
            SupplierUpdate,
            "supplier",
        ),
        CsvSpec(
            "bins",
            Bin,
            tuple(f for f in BinCreate.model_fields),
            BinCreate,
            BinUpdate,
            "bin",
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
    """What an import did, plus the orders the changed bins created (to wake the dispatcher)."""

    result: ImportResult
    order_ids: list[str]


def import_entities(
    factory: SessionFactory, spec: CsvSpec, data: bytes, actor: str, now_ms: int
) -> ImportOutcome:
    """Apply a CSV file in one transaction, or raise CsvInvalid having changed nothing."""
    rows = read_csv(data, spec.columns, required_columns=("id",))
    ids = {cells["id"] for _, cells in rows if cells["id"]}
    models: dict[tuple[int, str], BaseModel | ValidationError] = {}
    # Judged outside the write lock first: a bad sheet is refused without taking it.
    with transaction(factory, readonly=True) as session:
        snapshot = _Snapshot.load(session, spec, ids, lock=False)
    _plan(spec, rows, snapshot, models)
    with transaction(factory) as session:
        # again against what is there now (in memory, the models validated above reused)
        snapshot = _Snapshot.load(session, spec, ids, lock=True)
        plan = _plan(spec, rows, snapshot, models)
        try:
            return _write(session, spec, plan, actor, now_ms)
        except (
            IntegrityError
        ) as exc:  # a concurrent writer on PostgreSQL got there first
            raise CsvInvalid(
                [CsvProblem(0, None, f"conflicts with existing data: {exc.orig}")]
            ) from None


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for i in sorted(ids):
        batch.append(i)
        if len(batch) == ID_CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _table(spec: CsvSpec) -> Table:
    return cast(Table, spec.model.__table__)


@dataclass
class _Snapshot:
    """The sheet's existing rows and what its checks read, kept current as rows are planned.

    Also a BinRefs, so a bin row is checked by bin_refs.check_bin_refs."""

    rows: dict[str, dict[str, Any]]
    sites: set[str] = field(default_factory=set)
    skus: set[str] = field(default_factory=set)
    suppliers: set[str] = field(default_factory=set)
    agents: dict[str, str] = field(default_factory=dict)  # agent id -> site id
    channels: dict[tuple[str, str], str] = field(default_factory=dict)  # -> bin id
    # barcode (catalog.barcode_key: a GTIN in any form is one) -> SKU id
    barcodes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls, session: Session, spec: CsvSpec, ids: set[str], *, lock: bool
    ) -> _Snapshot:
        """A few queries: the rows with the sheet's ids (locked on PostgreSQL if ``lock``), and references."""
        table = _table(spec)
        columns = [table.c[c] for c in spec.columns]
        if spec.entity == "bins":
            columns.append(table.c.last_seen_ms)
        rows: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            stmt = select(*columns).where(table.c.id.in_(chunk))
            if lock and is_postgresql(session):
                stmt = stmt.with_for_update()
            rows.update((r["id"], dict(r)) for r in session.execute(stmt).mappings())
        snap = cls(rows)
        if spec.entity == "skus":
            taken = select(Sku.barcode, Sku.id).where(Sku.barcode.is_not(None))
            snap.barcodes = {
                catalog.barcode_key(code): sku
                for code, sku in session.execute(taken)
                if code is not None
            }
        if spec.entity == "bins":
            snap.sites = set(session.scalars(select(Site.id)))
            snap.skus = set(session.scalars(select(Sku.id)))
            snap.suppliers = set(session.scalars(select(Supplier.id)))
            snap.agents = dict(session.execute(select(Agent.id, Agent.site_id)).all())
            snap.channels = {
                (agent, channel): bin_id
                for bin_id, agent, channel in session.execute(
                    select(Bin.id, Bin.agent_id, Bin.channel).where(
                        Bin.agent_id.is_not(None), Bin.channel.is_not(None)
                    )
                )
                if agent is not None and channel is not None
            }
        return snap

    def site_exists(self, site_id: str) -> bool:
        """Whether the site exists."""
        return site_id in self.sites

    def sku_exists(self, sku_id: str) -> bool:
        """Whether the SKU exists."""
        return sku_id in self.skus

    def supplier_exists(self, supplier_id: str) -> bool:
        """Whether the supplier exists."""
        return supplier_id in self.suppliers

    def agent_site(self, agent_id: str) -> str | None:
        """The agent's site, or None if there is no such agent."""
        return self.agents.get(agent_id)

    def channel_owner(self, agent_id: str, channel: str, other_than: str) -> str | None:
        """The bin other than ``other_than`` that this channel of the agent feeds, if any."""
        owner = self.channels.get((agent_id, channel))
        return None if owner == other_than else owner


@dataclass
class _Plan:
    """What a checked sheet writes, in sheet order."""

    result: ImportResult
    creates: list[dict[str, Any]] = field(default_factory=list)
    # (id, the row's values before, the changed ones)
    updates: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(
        default_factory=list
    )
    agents: list[dict[str, Any]] = field(default_factory=list)


def _validated(
    models: dict[tuple[int, str], BaseModel | ValidationError],
    key: tuple[int, str],
    model: type[BaseModel],
    values: dict[str, Any],
) -> BaseModel:
    """The row's model, validated once per (row, how) for both passes; raises its ValidationError."""
    got = models.get(key)
    if got is None:
        try:
            # strict=False: cells are text; the models are strict for JSON
            got = model.model_validate(values, strict=False)
        except ValidationError as exc:
            got = exc
        models[key] = got
    if isinstance(got, ValidationError):
        raise got
    return got


def _plan(
    spec: CsvSpec,
    rows: list[tuple[int, dict[str, str]]],
    snap: _Snapshot,
    models: dict[tuple[int, str], BaseModel | ValidationError],
) -> _Plan:
    """Every row checked as if applied one after another; the plan, or CsvInvalid."""
    problems: list[CsvProblem] = []
    first_row_of: dict[str, int] = {}
    plan = _Plan(ImportResult(entity=spec.entity, created=0, updated=0, unchanged=0))
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
        try:
            problems.extend(_plan_row(spec, n, cells, snap, models, plan))
        except ValidationError as exc:
            problems.extend(_problems_from_validation(n, exc))
        except ApiError as exc:
            problems.append(_problem_from_api_error(n, exc))
    if problems:
        raise CsvInvalid(problems[:MAX_PROBLEMS])
    return plan


def _plan_row(
    spec: CsvSpec,
    n: int,
    cells: dict[str, str],
    snap: _Snapshot,
    models: dict[tuple[int, str], BaseModel | ValidationError],
    plan: _Plan,
) -> Sequence[CsvProblem]:
    entity_id = cells["id"]
    existing = snap.rows.get(entity_id) if entity_id else None
    current_url = existing.get("webhook_url") if existing is not None else None
    if foreign_redacted(cells.get("webhook_url"), current_url):
        return [CsvProblem(n, "webhook_url", REDACTED_URL_REFUSED)]
    if existing is None:
        values = {k: v for k, v in cells.items() if v != ""}
        data = _validated(models, (n, "create"), spec.create_model, values)
        new = data.model_dump()
        _check(spec, snap, entity_id, new, None)
        plan.creates.append(new)
        snap.rows[entity_id] = {**new, "last_seen_ms": None}
        _remember(spec, snap, entity_id, None, new, plan)
        plan.result.created += 1
        return ()
    keep_url = (
        current_url is not None
        and cells.get("webhook_url") == redact_url(current_url)
        and cells["webhook_url"] != current_url
    )
    if keep_url:
        # a redacted export imported back: the URL stays as it is
        cells = {k: v for k, v in cells.items() if k != "webhook_url"}
    patch = _validated(
        models,
        (n, "update-keep-url" if keep_url else "update"),
        spec.update_model,
        {k: (v if v != "" else None) for k, v in cells.items() if k != "id"},
    )
    diff = {k: v for k, v in cast(Patch, patch).changes().items() if existing[k] != v}
    if not diff:
        plan.result.unchanged += 1
        return ()
    merged = existing | diff
    _check(spec, snap, entity_id, merged, diff)
    plan.updates.append((entity_id, existing, diff))
    snap.rows[entity_id] = merged
    _remember(spec, snap, entity_id, existing, merged, plan)
    plan.result.updated += 1
    return ()


def _check(
    spec: CsvSpec,
    snap: _Snapshot,
    entity_id: str,
    values: dict[str, Any],
    diff: dict[str, Any] | None,
) -> None:
    """The catalog's checks of a new row (diff None) or a changed one; raises ApiError."""
    if spec.entity == "skus" and values["barcode"] is not None:
        if diff is None or "barcode" in diff:
            other = snap.barcodes.get(catalog.barcode_key(values["barcode"]))
            catalog.refuse_taken_barcode(
                values["barcode"], other if other != entity_id else None
            )
    if spec.entity == "bins":
        check_bin_refs(snap, entity_id, values, None if diff is None else diff.keys())


def _remember(
    spec: CsvSpec,
    snap: _Snapshot,
    entity_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    plan: _Plan,
) -> None:
    """Keep the snapshot as the row leaves it, so later rows are judged against it."""
    if spec.entity == "skus":
        if before is not None and before["barcode"] is not None:
            snap.barcodes.pop(catalog.barcode_key(before["barcode"]), None)
        if after["barcode"] is not None:
            snap.barcodes[catalog.barcode_key(after["barcode"])] = entity_id
    if spec.entity == "bins":
        if before is not None and before["agent_id"] and before["channel"]:
            snap.channels.pop((before["agent_id"], before["channel"]), None)
        if after["agent_id"] and after["channel"]:
            snap.channels[(after["agent_id"], after["channel"])] = entity_id
        agent_id = after["agent_id"]
        if agent_id is not None and agent_id not in snap.agents:
            # as catalog._ensure_agent: configuring a bin is what makes its agent known
            snap.agents[agent_id] = after["site_id"]
            plan.agents.append({"id": agent_id, "site_id": after["site_id"]})


def _write(
    session: Session, spec: CsvSpec, plan: _Plan, actor: str, now_ms: int
) -> ImportOutcome:
    """The plan in bulk: agents, updates (sheet order), inserts, audit rows, then recounts."""
    table = _table(spec)
    audits: list[dict[str, Any]] = []
    kind = spec.audit_entity
    if plan.agents:
        session.execute(insert(Agent), [{**a, "online": False} for a in plan.agents])
    if plan.updates:
        # Every column of the sheet, in sheet order: a row that frees a channel or a
        # barcode is written before the row that takes it, as the checks assumed.
        settable = [c for c in spec.columns if c != "id"]
        stmt = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({c: bindparam(c) for c in settable})
        )
        params = []
        for entity_id, before, diff in plan.updates:
            merged = before | diff
            params.append({"_id": entity_id} | {c: merged[c] for c in settable})
            audits.append(
                catalog.audit_values(
                    actor,
                    now_ms,
                    f"{kind}.update",
                    kind,
                    entity_id,
                    catalog.update_detail(before, diff),
                )
            )
        session.execute(stmt, params)
    if plan.creates:
        values = []
        for new in plan.creates:
            if spec.entity == "suppliers":
                secret = new["webhook_secret"] or new_webhook_secret()
                new = {**new, "webhook_secret": secret}
                plan.result.webhook_secrets[new["id"]] = secret
            values.append(new)
            audits.append(
                catalog.audit_values(
                    actor, now_ms, f"{kind}.create", kind, new["id"], new
                )
            )
        session.execute(insert(spec.model), values)
    if audits:
        session.execute(insert(AuditLog), audits)
    return ImportOutcome(
        plan.result, _after_updates(session, spec, plan, actor, now_ms)
    )


def _after_updates(
    session: Session, spec: CsvSpec, plan: _Plan, actor: str, now_ms: int
) -> list[str]:
    """What catalog.update_bin/update_sku do after a change: recount, reorder; order ids."""
    made: list[str] = []
    if spec.entity == "skus":
        for sku_id, _, diff in plan.updates:
            if "unit_weight_g" in diff:
                made += catalog.recount_sku_bins(session, sku_id, actor, now_ms)
    if spec.entity != "bins":
        return made
    # only a bin whose scale has reported can be recounted or order
    measured = [
        (bin_id, before | diff, diff.keys())
        for bin_id, before, diff in plan.updates
        if before["last_seen_ms"] is not None
    ]
    recalibrated = [b for b, _, keys in measured if keys & catalog.CALIBRATION_FIELDS]
    loaded = _bins(session, recalibrated)
    moved = {b for b in recalibrated if catalog.recount(session, loaded[b], now_ms)}
    judge = [
        (bin_id, merged["reorder_point"])
        for bin_id, merged, keys in measured
        if bin_id in moved or keys & catalog.REORDER_FIELDS
    ]
    # The reorder rule reads a bin's position, a few queries a bin: read them for all
    # at once, and run it only where the position is at or below the reorder point
    # (elsewhere it orders nothing). The bins are locked (see _Snapshot.load), so the
    # position cannot move in between.
    session.flush()
    position: dict[str, Position] = {}
    for chunk in _chunks(b for b, _ in judge):
        position.update(positions(session, chunk))
    due = [b for b, point in judge if position[b].total <= point]
    loaded |= _bins(session, [b for b in due if b not in loaded])
    for bin_id in due:
        order = catalog.reconsider(session, loaded[bin_id], actor, now_ms)
        if order is not None:
            made.append(order.id)
    return made


def _bins(session: Session, ids: list[str]) -> dict[str, Bin]:
    loaded: dict[str, Bin] = {}
    for chunk in _chunks(ids):
        loaded.update(
            (b.id, b) for b in session.scalars(select(Bin).where(Bin.id.in_(chunk)))
        )
    return loaded
