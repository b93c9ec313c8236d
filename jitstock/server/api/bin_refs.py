"""A bin's references and numbers, checked before it is written: by the JSON routes
(through the database) and by the CSV import (a whole sheet in memory)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.api.errors import Conflict, FieldInvalid
from jitstock.server.db.models import Agent, Bin, Site, Sku, Supplier


class BinRefs(Protocol):
    """What a bin's checks read: the rows it refers to and the channels in use."""

    def site_exists(self, site_id: str) -> bool:
        """Whether the site exists."""
        ...

    def sku_exists(self, sku_id: str) -> bool:
        """Whether the SKU exists."""
        ...

    def supplier_exists(self, supplier_id: str) -> bool:
        """Whether the supplier exists."""
        ...

    def agent_site(self, agent_id: str) -> str | None:
        """The agent's site, or None if there is no such agent."""
        ...

    def channel_owner(self, agent_id: str, channel: str, other_than: str) -> str | None:
        """The bin other than ``other_than`` that this channel of the agent feeds, if any."""
        ...


class SessionBinRefs:
    """BinRefs read from the database, one query each."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def site_exists(self, site_id: str) -> bool:
        """Whether the site exists."""
        return self.session.get(Site, site_id) is not None

    def sku_exists(self, sku_id: str) -> bool:
        """Whether the SKU exists."""
        return self.session.get(Sku, sku_id) is not None

    def supplier_exists(self, supplier_id: str) -> bool:
        """Whether the supplier exists."""
        return self.session.get(Supplier, supplier_id) is not None

    def agent_site(self, agent_id: str) -> str | None:
        """The agent's site, or None if there is no such agent."""
        agent = self.session.get(Agent, agent_id)
        return None if agent is None else agent.site_id

    def channel_owner(self, agent_id: str, channel: str, other_than: str) -> str | None:
        """The bin other than ``other_than`` that this channel of the agent feeds, if any."""
        return self.session.scalars(
            select(Bin.id).where(
                Bin.agent_id == agent_id, Bin.channel == channel, Bin.id != other_than
            )
        ).first()


# The fields of the reorder point vs capacity rule: it holds for a configured reorder
# point, while a learnt one (the policy writes bins.reorder_point) may exceed the capacity.
CAPACITY_RULE_FIELDS = frozenset({"reorder_point", "capacity"})


def check_bin(
    session: Session,
    bin_id: str,
    v: dict[str, Any],
    changed: Collection[str] | None = None,
) -> None:
    """Refuse a bin configuration (all fields merged) whose references or numbers do not hold."""
    check_bin_refs(SessionBinRefs(session), bin_id, v, changed)


def check_bin_refs(
    refs: BinRefs,
    bin_id: str,
    v: dict[str, Any],
    changed: Collection[str] | None = None,
) -> None:
    """check_bin against any BinRefs (the CSV import checks a whole sheet in memory).

    ``changed``: the fields a change of an existing bin sets (None: a new bin).  The
    reorder point vs capacity rule is checked only when the change sets one of them, so
    a bin whose learnt reorder point exceeds its capacity can still be paused, recounted,
    recalibrated or re-tared."""
    if not refs.site_exists(v["site_id"]):
        raise FieldInvalid("site_id", f"site {v['site_id']!r} does not exist")
    if not refs.sku_exists(v["sku_id"]):
        raise FieldInvalid("sku_id", f"SKU {v['sku_id']!r} does not exist")
    if v.get("supplier_id") is not None and not refs.supplier_exists(v["supplier_id"]):
        raise FieldInvalid(
            "supplier_id", f"supplier {v['supplier_id']!r} does not exist"
        )
    agent_id = v.get("agent_id")
    if agent_id is not None:
        agent_site = refs.agent_site(agent_id)
        if agent_site is not None and agent_site != v["site_id"]:
            raise FieldInvalid(
                "agent_id",
                f"agent {agent_id!r} belongs to site {agent_site!r}, not {v['site_id']!r}",
            )
    elif v.get("channel") is not None:
        raise FieldInvalid(
            "agent_id",
            "required when channel is set (a channel is a port of one agent)",
        )
    if agent_id is not None and v.get("channel") is not None:
        other = refs.channel_owner(agent_id, v["channel"], bin_id)
        if other is not None:
            raise Conflict(
                f"channel: {v['channel']!r} of agent {agent_id!r} already feeds bin {other!r}",
                field="channel",
            )
    capacity = v.get("capacity")
    if changed is not None and not CAPACITY_RULE_FIELDS & set(changed):
        return
    if capacity is not None and v.get("reorder_point", 0) > capacity:
        raise FieldInvalid(
            "reorder_point",
            f"{v['reorder_point']} exceeds the bin's capacity {capacity}",
        )
