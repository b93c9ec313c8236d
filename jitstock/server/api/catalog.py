"""Master data changes (sites, SKUs, suppliers, bins) with their checks and audit rows.

Shared by the JSON routes and the CSV import, so both refuse the same things
with the same messages.  Functions change the session and never commit; they
raise FieldInvalid / Conflict / NotFound (translated to HTTP in errors.py)
*before* changing anything, so a refused change leaves the session clean.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from jitstock.server import reorder
from jitstock.server.api.bin_refs import check_bin
from jitstock.server.api.errors import Conflict, NotFound
from jitstock.server.api.schemas import BinCreate, SiteCreate, SkuCreate, SupplierCreate
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import (
    Agent,
    ApiKey,
    Base,
    Bin,
    BinEvent,
    Order,
    Site,
    Sku,
    Supplier,
)
from jitstock.server.db.secrets import new_webhook_secret
from jitstock.server.levels import count_of, tare_fault
from jitstock.server.supplier.scancode import as_gtin, gtin_forms

M = TypeVar("M", bound=Base)
SECRET_FIELDS = frozenset({"webhook_secret"})
# Bin fields whose change can move the inventory position relative to the reorder point.
REORDER_FIELDS = frozenset(
    {"reorder_point", "order_qty", "supplier_id", "paused", "capacity"}
)
CALIBRATION_FIELDS = frozenset({"tare_g", "unit_weight_g", "sku_id"})


def get_or_404(
    session: Session, model: type[M], entity: str, entity_id: str | int
) -> M:
    """A row by primary key, or NotFound naming the entity."""
    row = session.get(model, entity_id)
    if row is None:
        raise NotFound(entity, str(entity_id))
    return row


def _redact(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("<set>" if k in SECRET_FIELDS and v is not None else v)
        for k, v in values.items()
    }


def _audit(
    session: Session,
    actor: str,
    now_ms: int,
    action: str,
    entity: str,
    entity_id: str,
    detail: dict[str, Any],
) -> None:
    record_audit(
        session, **audit_values(actor, now_ms, action, entity, entity_id, detail)
    )


def _diff(row: Base, changes: dict[str, Any]) -> dict[str, Any]:
    """The subset of changes that differ from the row's current values."""
    return {k: v for k, v in changes.items() if getattr(row, k) != v}


def update_detail(before: dict[str, Any], diff: dict[str, Any]) -> dict[str, Any]:
    """The audit detail of an update: each changed field from → to (a secret only 'rotated')."""
    return {
        k: "rotated" if k in SECRET_FIELDS else {"from": before[k], "to": v}
        for k, v in diff.items()
    }


def audit_values(
    actor: str,
    now_ms: int,
    action: str,
    entity: str,
    entity_id: str,
    detail: dict[str, Any],
) -> dict[str, Any]:
    """The columns of an audit row as :func:`_audit` writes it (secrets redacted), for a bulk insert."""
    return {
        "at_ms": now_ms,
        "actor": actor,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "detail": _redact(detail),
    }


def _apply(
    session: Session,
    row: Base,
    entity: str,
    entity_id: str,
    diff: dict[str, Any],
    actor: str,
    now_ms: int,
) -> None:
    before = {k: getattr(row, k) for k in diff}
    for k, v in diff.items():
        setattr(row, k, v)
    detail = update_detail(before, diff)
    _audit(session, actor, now_ms, f"{entity}.update", entity, entity_id, detail)


def _in_use(
    session: Session, entity: str, entity_id: str, checks: list[tuple[str, Any]]
) -> None:
    """Conflict if any of the (what, count query) pairs counts rows referencing the entity."""
    uses = []
    for what, stmt in checks:
        n = int(session.scalar(stmt) or 0)
        if n:
            uses.append(f"{n} {what}")
    if uses:
        raise Conflict(f"{entity} {entity_id!r} is still used by {', '.join(uses)}")


# --- sites -------------------------------------------------------------------


def create_site(session: Session, data: SiteCreate, actor: str, now_ms: int) -> Site:
    """Add a site."""
    if session.get(Site, data.id) is not None:
        raise Conflict(f"site {data.id!r} already exists", field="id")
    row = Site(**data.model_dump())
    session.add(row)
    _audit(session, actor, now_ms, "site.create", "site", row.id, data.model_dump())
    return row


def update_site(
    session: Session, site_id: str, changes: dict[str, Any], actor: str, now_ms: int
) -> tuple[Site, bool]:
    """Change a site; returns (row, whether anything changed)."""
    row = get_or_404(session, Site, "site", site_id)
    diff = _diff(row, changes)
    if diff:
        _apply(session, row, "site", site_id, diff, actor, now_ms)
    return row, bool(diff)


def delete_site(session: Session, site_id: str, actor: str, now_ms: int) -> None:
    """Remove a site that no bin or order refers to (its idle agents go with it)."""
    row = get_or_404(session, Site, "site", site_id)
    _in_use(
        session,
        "site",
        site_id,
        [
            (
                "bins",
                select(func.count()).select_from(Bin).where(Bin.site_id == site_id),
            ),
            (
                "orders",
                select(func.count()).select_from(Order).where(Order.site_id == site_id),
            ),
        ],
    )
    for agent in session.scalars(select(Agent).where(Agent.site_id == site_id)):
        session.delete(agent)
    session.delete(row)
    _audit(session, actor, now_ms, "site.delete", "site", site_id, {})


# --- SKUs --------------------------------------------------------------------


def barcode_key(barcode: str) -> str:
    """What makes two barcodes the same: a GTIN's 14 digits (an EAN-13 and its GTIN-14
    with a leading zero are one barcode, as a dock scan matches them alike), else the
    barcode itself."""
    return as_gtin(barcode) or barcode


def refuse_taken_barcode(
    barcode: str, other: str | None, stored: str | None = None
) -> None:
    """Conflict if the barcode already belongs to another SKU (``other``, which has it
    stored as ``stored`` when that is another form of the same GTIN)."""
    if other is not None:
        as_stored = "" if stored in (None, barcode) else f" (as {stored!r})"
        raise Conflict(
            f"barcode: {barcode!r} already belongs to SKU {other!r}{as_stored}",
            field="barcode",
        )


def _check_barcode(session: Session, barcode: str | None, sku_id: str) -> None:
    """One barcode, one SKU: a GTIN in another form (``04006381333931`` for the EAN-13
    ``4006381333931``) is the same barcode, as a dock scan matches them alike."""
    if barcode is None:
        return
    gtin = as_gtin(barcode)
    same = gtin_forms(gtin) if gtin is not None else [barcode]
    other = session.execute(
        select(Sku.id, Sku.barcode).where(Sku.barcode.in_(same), Sku.id != sku_id)
    ).first()
    if other is not None:
        refuse_taken_barcode(barcode, other.id, other.barcode)


def create_sku(session: Session, data: SkuCreate, actor: str, now_ms: int) -> Sku:
    """Add a SKU."""
    if session.get(Sku, data.id) is not None:
        raise Conflict(f"SKU {data.id!r} already exists", field="id")
    _check_barcode(session, data.barcode, data.id)
    row = Sku(**data.model_dump())
    session.add(row)
    _audit(session, actor, now_ms, "sku.create", "sku", row.id, data.model_dump())
    return row


def update_sku(
    session: Session,
    sku_id: str,
    changes: dict[str, Any],
    actor: str,
    now_ms: int,
    made: list[str] | None = None,
) -> tuple[Sku, bool]:
    """Change a SKU; a new unit weight recounts the bins that use it, and a bin the
    recount puts at or below its reorder point orders now (ids appended to ``made``),
    as a bin's own unit weight change does — not at its next reading."""
    row = get_or_404(session, Sku, "SKU", sku_id)
    diff = _diff(row, changes)
    if "barcode" in diff:
        _check_barcode(session, diff["barcode"], sku_id)
    if diff:
        _apply(session, row, "sku", sku_id, diff, actor, now_ms)
    if "unit_weight_g" in diff:
        ids = recount_sku_bins(session, sku_id, actor, now_ms)
        if made is not None:
            made.extend(ids)
    return row, bool(diff)


def recount_sku_bins(
    session: Session, sku_id: str, actor: str, now_ms: int
) -> list[str]:
    """Recount the bins that take a SKU's unit weight after it changed; ids of the orders made."""
    session.flush()
    made = []
    for b in session.scalars(
        select(Bin)
        .where(Bin.sku_id == sku_id, Bin.unit_weight_g.is_(None))
        .order_by(Bin.id)
    ):
        if recount(session, b, now_ms):
            order = reconsider(session, b, actor, now_ms, "SKU unit weight changed")
            if order is not None:
                made.append(order.id)
    return made


def delete_sku(session: Session, sku_id: str, actor: str, now_ms: int) -> None:
    """Remove a SKU no bin or order refers to."""
    row = get_or_404(session, Sku, "SKU", sku_id)
    _in_use(
        session,
        "SKU",
        sku_id,
        [
            ("bins", select(func.count()).select_from(Bin).where(Bin.sku_id == sku_id)),
            (
                "orders",
                select(func.count()).select_from(Order).where(Order.sku_id == sku_id),
            ),
        ],
    )
    session.delete(row)
    _audit(session, actor, now_ms, "sku.delete", "sku", sku_id, {})


# --- suppliers ---------------------------------------------------------------


def create_supplier(
    session: Session, data: SupplierCreate, actor: str, now_ms: int
) -> tuple[Supplier, str]:
    """Add a supplier; returns it and its webhook secret (generated unless given)."""
    if session.get(Supplier, data.id) is not None:
        raise Conflict(f"supplier {data.id!r} already exists", field="id")
    values = data.model_dump()
    secret = values["webhook_secret"] or new_webhook_secret()
    values["webhook_secret"] = secret
    row = Supplier(**values)
    session.add(row)
    _audit(session, actor, now_ms, "supplier.create", "supplier", row.id, values)
    return row, secret


def update_supplier(
    session: Session, supplier_id: str, changes: dict[str, Any], actor: str, now_ms: int
) -> tuple[Supplier, bool]:
    """Change a supplier."""
    row = get_or_404(session, Supplier, "supplier", supplier_id)
    diff = _diff(row, changes)
    if diff:
        _apply(session, row, "supplier", supplier_id, diff, actor, now_ms)
        if "webhook_secret" in diff:
            # a secret set outright replaces the current one at once: a secret left from
            # an earlier rotation (older than the one replaced) must not go on signing
            row.webhook_secret_previous = None
            row.webhook_secret_previous_until_ms = None
    return row, bool(diff)


# Both secrets sign webhooks this long after a rotation, so a supplier can switch without downtime.
SECRET_ROTATION_GRACE_MS = 24 * 3600 * 1000


def rotate_supplier_secret(
    session: Session, supplier_id: str, actor: str, now_ms: int
) -> tuple[Supplier, str]:
    """Give a supplier a fresh webhook secret (returned once); the old one keeps signing for a grace period."""
    secret = new_webhook_secret()
    previous = get_or_404(session, Supplier, "supplier", supplier_id).webhook_secret
    row, _ = update_supplier(
        session, supplier_id, {"webhook_secret": secret}, actor, now_ms
    )
    row.webhook_secret_previous = previous
    row.webhook_secret_previous_until_ms = now_ms + SECRET_ROTATION_GRACE_MS
    return row, secret


def delete_supplier(
    session: Session, supplier_id: str, actor: str, now_ms: int
) -> None:
    """Remove a supplier no bin or order refers to and with no live API key.

    Its revoked and expired keys keep their rows (``GET /keys`` lists them: the audit
    trail), detached from the supplier (``supplier_id`` NULL: bound to no supplier, a
    supplier key is refused anyway); the delete's audit row names them.
    """
    row = get_or_404(session, Supplier, "supplier", supplier_id)
    _in_use(
        session,
        "supplier",
        supplier_id,
        [
            (
                "bins",
                select(func.count())
                .select_from(Bin)
                .where(Bin.supplier_id == supplier_id),
            ),
            (
                "orders",
                select(func.count())
                .select_from(Order)
                .where(Order.supplier_id == supplier_id),
            ),
        ],
    )
    own_keys = ApiKey.supplier_id == supplier_id
    live = session.scalar(
        select(func.count())
        .select_from(ApiKey)
        .where(
            own_keys,
            ApiKey.revoked.is_(False),
            or_(ApiKey.expires_ms.is_(None), ApiKey.expires_ms > now_ms),
        )
    )
    if live:
        raise Conflict(
            f"supplier {supplier_id!r} still has {live} active API key(s): "
            "revoke them first"
        )
    dead_keys = list(session.scalars(select(ApiKey).where(own_keys)))
    for key in dead_keys:
        key.supplier_id = None
    session.flush()  # the keys let go of the supplier before its row goes
    session.delete(row)
    detail = {"detached_keys": sorted(k.id for k in dead_keys)} if dead_keys else {}
    _audit(session, actor, now_ms, "supplier.delete", "supplier", supplier_id, detail)


# --- bins --------------------------------------------------------------------


def _ensure_agent(session: Session, agent_id: str | None, site_id: str) -> None:
    # Ingest stores status only for known agents: configuring a bin is what makes its agent known.
    if agent_id is not None and session.get(Agent, agent_id) is None:
        session.add(Agent(id=agent_id, site_id=site_id, online=False))
        session.flush()


def recount(session: Session, row: Bin, now_ms: int) -> bool:
    """Re-derive on_hand from the last weight after a calibration change; True if it moved."""
    if row.last_grams is None or row.last_seen_ms is None:
        return False
    if tare_fault(row.last_grams, row.tare_g, row.effective_unit_weight_g):
        return False  # the scale is not weighing (or the new tare is wrong): level held
    count, confidence = count_of(
        row.last_grams, row.tare_g, row.effective_unit_weight_g
    )
    row.on_hand_confidence = confidence
    if count == row.on_hand:
        return False
    delta = count - row.on_hand
    row.on_hand = count
    session.add(
        BinEvent(
            bin_id=row.id,
            ts_ms=now_ms,
            kind="recount",
            delta=delta,
            on_hand_after=count,
        )
    )
    return True


def reconsider(
    session: Session,
    row: Bin,
    actor: str,
    now_ms: int,
    reason: str = "bin configuration changed",
) -> Order | None:
    """The reorder rule for a bin whose configuration changed (its order, if one is due)."""
    # Only a bin with a measured level can be judged: a new bin reads 0 before its scale reports.
    if row.last_seen_ms is None:
        return None
    return reorder.maybe_reorder(session, row, now_ms, {"reason": reason, "by": actor})


def reconsider_sku_bins(
    session: Session, sku_id: str, reason: str, actor: str, now_ms: int
) -> list[Order]:
    """The reorder rule for every bin of a SKU after a change of who may supply it (a
    bin already at or below its reorder point orders now, not at its next reading)."""
    session.flush()
    made = []
    for row in session.scalars(
        select(Bin).where(Bin.sku_id == sku_id).order_by(Bin.id)
    ):
        order = reconsider(session, row, actor, now_ms, reason)
        if order is not None:
            made.append(order)
    return made


def create_bin(session: Session, data: BinCreate, actor: str, now_ms: int) -> Bin:
    """Add a bin (and its agent if new); it orders only once its scale has reported."""
    if session.get(Bin, data.id) is not None:
        raise Conflict(f"bin {data.id!r} already exists", field="id")
    values = data.model_dump()
    check_bin(session, data.id, values)
    _ensure_agent(session, data.agent_id, data.site_id)
    row = Bin(**values)
    session.add(row)
    _audit(session, actor, now_ms, "bin.create", "bin", row.id, values)
    return row


def update_bin(
    session: Session, bin_id: str, changes: dict[str, Any], actor: str, now_ms: int
) -> tuple[Bin, bool, Order | None]:
    """Change a bin: recount on recalibration, re-run the reorder rule when its inputs change."""
    row = get_or_404(session, Bin, "bin", bin_id)
    diff = _diff(row, changes)
    if not diff:
        return row, False, None
    merged = {c: getattr(row, c) for c in BinCreate.model_fields if c != "id"} | diff
    check_bin(session, bin_id, merged, diff.keys())
    _ensure_agent(session, merged["agent_id"], merged["site_id"])
    _apply(session, row, "bin", bin_id, diff, actor, now_ms)
    session.flush()
    session.refresh(row, ["sku"])  # a new sku_id must bring its unit weight
    moved = recount(session, row, now_ms) if diff.keys() & CALIBRATION_FIELDS else False
    order = (
        reconsider(session, row, actor, now_ms)
        if moved or diff.keys() & REORDER_FIELDS
        else None
    )
    return row, True, order


def delete_bin(session: Session, bin_id: str, actor: str, now_ms: int) -> None:
    """Remove a bin that never ordered (otherwise pause it: orders keep their history)."""
    row = get_or_404(session, Bin, "bin", bin_id)
    n = int(
        session.scalar(
            select(func.count()).select_from(Order).where(Order.bin_id == bin_id)
        )
        or 0
    )
    if n:
        raise Conflict(
            f"bin {bin_id!r} has {n} order(s); set paused=true instead of deleting it"
        )
    session.delete(row)
    _audit(session, actor, now_ms, "bin.delete", "bin", bin_id, {})
