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
from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.api.auth import Principal
from jitstock.server.api.deps import CurrentKey
from jitstock.server.api.errors import Forbidden
from jitstock.server.db.models import ApiKey
from jitstock.server.dispatch import ACTOR as DISPATCHER
from jitstock.server.reorder import ACTOR as REORDER
from jitstock.server.supplier.escalation import ACTOR as ESCALATION
from jitstock.server.supplier.links import ACTOR_PREFIX as EMAIL_LINK
from jitstock.server.supplier.receiving import ACTOR_SCALE

SUPPLIER_ROLE = "supplier"
# What a supplier key reads as the actor of a plant person's action: people's names are
# the plant's personal data, not the supplier's business.
PLANT_ACTOR = "plant"
# The plant's software acts under these names; they name no person and say why.
SYSTEM_ACTORS = frozenset({DISPATCHER, REORDER, ESCALATION, ACTOR_SCALE})


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


def own_actors(session: Session, supplier_id: str) -> frozenset[str]:
    """The names a supplier's own actions are recorded under: its API keys (revoked
    ones too: the history outlives them) and its e-mail links."""
    names = session.scalars(
        select(ApiKey.name).where(ApiKey.supplier_id == supplier_id)
    )
    return frozenset([*names, EMAIL_LINK + supplier_id])


def public_actor(actor: str, own: frozenset[str]) -> str:
    """An actor as a supplier key reads it: its own and the plant's software by name,
    any plant person (a user, a dock station) as ``plant``."""
    return actor if actor in own or actor in SYSTEM_ACTORS else PLANT_ACTOR
