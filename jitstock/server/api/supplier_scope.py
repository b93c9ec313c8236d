"""Who may touch orders: plant roles, and supplier keys confined to their own supplier.

A supplier key asking for another supplier's order gets 404, never 403, so
order ids do not leak across suppliers; plant routes answer it 403 (its role
ranks outside viewer < manager < admin).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends
from pydantic import BaseModel

from jitstock.server.api.auth import Principal
from jitstock.server.api.deps import CurrentKey
from jitstock.server.api.errors import Forbidden

SUPPLIER_ROLE = "supplier"


def scope_of(key: Principal) -> str | None:
    """The supplier a key is confined to (None: a plant key sees every order)."""
    return key.supplier_id if key.role == SUPPLIER_ROLE else None


def _plant_or_supplier(role: str) -> Callable[[Principal], Principal]:
    def check(key: CurrentKey) -> Principal:
        if key.role == SUPPLIER_ROLE:
            if not key.supplier_id:
                raise Forbidden(f"supplier key {key.name!r} is bound to no supplier")
            return key
        if not key.allows(role):
            raise Forbidden(
                f"requires role {role!r} or a supplier key; key {key.name!r} has role {key.role!r}"
            )
        return key

    return check


def _supplier_only(key: CurrentKey) -> Principal:
    if key.role != SUPPLIER_ROLE or not key.supplier_id:
        raise Forbidden(
            f"requires a supplier key; key {key.name!r} has role {key.role!r}"
        )
    return key


OrderReader = Annotated[Principal, Depends(_plant_or_supplier("viewer"))]
OrderActor = Annotated[Principal, Depends(_plant_or_supplier("manager"))]
SupplierKey = Annotated[Principal, Depends(_supplier_only)]


_OutT = TypeVar("_OutT", bound=BaseModel)


def for_key(out: _OutT, key: object) -> _OutT:
    """What this key may read of an order: a supplier gets no internal trigger and no
    bridged order id (stock figures, other suppliers' order ids)."""
    if getattr(key, "role", None) != SUPPLIER_ROLE:
        return out
    return out.model_copy(update={"trigger": None, "bridge_for": None})
