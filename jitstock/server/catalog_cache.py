"""What a crossing's decision and claim look up about suppliers, SKUs and sites, kept
between flushes for one *generation* of the catalogue.

A flush that creates an order used to read, in its own transaction, the supplier rows
(webhook, secrets, channel), the SKUs' names, the sites, the supplier items (supplier
SKU, quoted lead time) and who may supply each SKU: five statements and an ORM load
for facts that change a few times a day.  They are read here once per generation,
lazily (only the ids a flush asks for) and by plain Core statements.

A generation ends (everything here is forgotten) when:

- the bin registry is reloaded (:meth:`jitstock.server.registry.BinRegistry.reload`:
  at start, after every API change to bins or agents, and every 10 s for changes
  made by another process), and
- a connection of this process writes a supplier, supplier item, SKU or site with a
  Core or ORM statement (an ORM flush, a bulk update), and again when its
  transaction ends, so the API's changes count for the very next order.  (Writes
  as SQL text, or by another process, are seen at the next registry reload.)

A fact read while a generation ended is not kept: it is stored with the generation
current *before* it was read, and a newer generation makes it invalid.  The
facts are kept per engine, so tests running several servers in one process do not
share them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Delete,
    Engine,
    Insert,
    Update,
    bindparam,
    event,
    select,
)

from jitstock.server.db.models import Site, Sku, Supplier
from jitstock.server.db.supplier_models import SupplierItem

K = TypeVar("K")
V = TypeVar("V")

# tables whose change (by an ORM write of this process) ends a generation
_WATCHED = (Supplier, SupplierItem, Sku, Site)


@dataclass(frozen=True, slots=True)
class SupplierFacts:
    """The supplier columns a claimed attempt needs (as :class:`Supplier` names them)."""

    id: str
    webhook_url: str | None
    webhook_secret: str | None
    webhook_secret_previous: str | None
    webhook_secret_previous_until_ms: int | None
    order_channel: str
    email: str | None
    mqtt_orders: bool


@dataclass(frozen=True, slots=True)
class SiteFacts:
    """A site's columns an order body names."""

    id: str
    name: str
    address: str | None
    dock: str | None


@dataclass(frozen=True, slots=True)
class ItemFacts:
    """A supplier item's columns an order body names."""

    supplier_sku: str | None
    quoted_lead_time_s: int | None


_lock = threading.Lock()
_generation = 0
# engine -> kind -> key -> (generation read at, value)
_facts: weakref.WeakKeyDictionary[Engine, dict[str, dict[Any, Any]]] = (
    weakref.WeakKeyDictionary()
)


def generation() -> int:
    """The current generation (a new one after each :func:`invalidate`)."""
    return _generation


def invalidate() -> None:
    """End the generation: forget every fact."""
    global _generation
    with _lock:
        _generation += 1
        _facts.clear()


def _cached(
    conn: Connection,
    kind: str,
    keys: Iterable[K],
    load: Callable[[list[K]], dict[K, V]],
    missing: V,
) -> dict[K, V]:
    """Values of these keys: from this generation's facts, the others loaded (a key the
    loader does not return gets ``missing``, remembered as well)."""
    gen = _generation
    with _lock:
        store = _facts.setdefault(conn.engine, {}).setdefault(kind, {})
    out: dict[K, V] = {}
    todo: list[K] = []
    for k in keys:
        hit = store.get(k)
        if hit is not None and hit[0] == gen:
            out[k] = hit[1]
        else:
            todo.append(k)
    if todo:
        loaded = load(todo)
        with _lock:
            keep = gen == _generation  # nothing changed while it was read
            for k in todo:
                value = loaded.get(k, missing)
                out[k] = value
                if keep:
                    store[k] = (gen, value)
    return out


_SUPPLIERS = select(
    Supplier.id,
    Supplier.webhook_url,
    Supplier.webhook_secret,
    Supplier.webhook_secret_previous,
    Supplier.webhook_secret_previous_until_ms,
    Supplier.order_channel,
    Supplier.email,
    Supplier.mqtt_orders,
).where(Supplier.id.in_(bindparam("ids", expanding=True)))
_SKU_NAMES = select(Sku.id, Sku.name).where(
    Sku.id.in_(bindparam("ids", expanding=True))
)
_SITES = select(Site.id, Site.name, Site.address, Site.dock).where(
    Site.id.in_(bindparam("ids", expanding=True))
)
_ITEMS = select(
    SupplierItem.supplier_id,
    SupplierItem.sku_id,
    SupplierItem.supplier_sku,
    SupplierItem.quoted_lead_time_s,
).where(
    SupplierItem.supplier_id.in_(bindparam("suppliers", expanding=True)),
    SupplierItem.sku_id.in_(bindparam("skus", expanding=True)),
)
# the same order as jitstock.server.db.supplier_models.supplier_items_for
_ACTIVE_ITEMS = (
    select(SupplierItem.sku_id, SupplierItem.supplier_id)
    .where(
        SupplierItem.sku_id.in_(bindparam("skus", expanding=True)),
        SupplierItem.active.is_(True),
    )
    .order_by(SupplierItem.sku_id, SupplierItem.priority, SupplierItem.supplier_id)
)


def suppliers(conn: Connection, ids: Iterable[str]) -> dict[str, SupplierFacts | None]:
    """Supplier id -> its facts (None: no such supplier)."""

    def load(todo: list[str]) -> dict[str, SupplierFacts | None]:
        return {
            r.id: SupplierFacts(
                r.id,
                r.webhook_url,
                r.webhook_secret,
                r.webhook_secret_previous,
                r.webhook_secret_previous_until_ms,
                r.order_channel,
                r.email,
                bool(r.mqtt_orders),
            )
            for r in conn.execute(_SUPPLIERS, {"ids": todo})
        }

    return _cached(conn, "suppliers", sorted(set(ids)), load, None)


def sku_names(conn: Connection, ids: Iterable[str]) -> dict[str, str | None]:
    """SKU id -> its name (None: no such SKU)."""

    def load(todo: list[str]) -> dict[str, str | None]:
        return dict(conn.execute(_SKU_NAMES, {"ids": todo}).all())

    return _cached(conn, "skus", sorted(set(ids)), load, None)


def sites(conn: Connection, ids: Iterable[str]) -> dict[str, SiteFacts | None]:
    """Site id -> its facts (None: no such site)."""

    def load(todo: list[str]) -> dict[str, SiteFacts | None]:
        return {
            r.id: SiteFacts(r.id, r.name, r.address, r.dock)
            for r in conn.execute(_SITES, {"ids": todo})
        }

    return _cached(conn, "sites", sorted(set(ids)), load, None)


def items(
    conn: Connection, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], ItemFacts | None]:
    """(supplier, SKU) -> the supplier item's facts (None: no such item)."""

    def load(todo: list[tuple[str, str]]) -> dict[tuple[str, str], ItemFacts | None]:
        params = {
            "suppliers": sorted({s for s, _ in todo}),
            "skus": sorted({k for _, k in todo}),
        }
        return {
            (r.supplier_id, r.sku_id): ItemFacts(r.supplier_sku, r.quoted_lead_time_s)
            for r in conn.execute(_ITEMS, params)
        }

    return _cached(conn, "items", sorted(set(pairs)), load, None)


def active_suppliers(conn: Connection, skus: Iterable[str]) -> dict[str, list[str]]:
    """SKU -> the suppliers of its active items, in preference order (priority, id)."""

    def load(todo: list[str]) -> dict[str, tuple[str, ...]]:
        by_sku: dict[str, list[str]] = {}
        for sku, supplier in conn.execute(_ACTIVE_ITEMS, {"skus": todo}):
            by_sku.setdefault(sku, []).append(supplier)
        return {k: tuple(v) for k, v in by_sku.items()}

    none: tuple[str, ...] = ()
    found = _cached(conn, "active", sorted(set(skus)), load, none)
    return {k: list(v) for k, v in found.items()}


# ------------------------------------------------------------ invalidation

_TOUCHED = "jitstock_catalog_touched"
_WATCHED_TABLES = frozenset(m.__table__.name for m in _WATCHED)  # type: ignore[attr-defined]


@event.listens_for(Engine, "before_execute")
def _before_execute(
    conn: Connection, clause: Any, _multi: Any, _params: Any, _options: Any
) -> None:
    """A write to a watched table (an ORM flush, an ORM or Core insert, update or
    delete, from any session or connection of this process) ends the generation now
    and again when its transaction ends (a read in between must not be kept)."""
    if isinstance(clause, Insert | Update | Delete):
        table = getattr(clause, "table", None)
        if getattr(table, "name", None) in _WATCHED_TABLES:
            conn.info[_TOUCHED] = True
            invalidate()


@event.listens_for(Engine, "commit")
def _after_commit(conn: Connection) -> None:
    _transaction_ended(conn)


@event.listens_for(Engine, "rollback")
def _after_rollback(conn: Connection) -> None:
    _transaction_ended(conn)


def _transaction_ended(conn: Connection) -> None:
    if conn.invalidated:
        # A connection lost mid-transaction (a PostgreSQL restart) is rolled back
        # invalidated. Its ``info`` would try to reconnect and raise PendingRollbackError
        # in place of the OperationalError that ingest retries as transient. What it
        # wrote is gone either way: end the generation.
        invalidate()
    elif conn.info.pop(_TOUCHED, False):
        invalidate()
