"""State DB table of the replenishment logic (issue 4): each bin's last policy computation.

Same conventions as :mod:`jitstock.server.db.models`.  The history of changes
lives in the audit log (action ``bin.policy``); this table holds the latest
numbers and their inputs, which ``GET /api/v1/bins/{id}/policy`` explains.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from jitstock.server.db.models import Base, JsonDoc


class BinPolicy(Base):
    """The last policy computed for a bin: inputs, results and why it was computed."""

    __tablename__ = "bin_policies"

    bin_id: Mapped[str] = mapped_column(
        ForeignKey("bins.id", ondelete="CASCADE"), primary_key=True
    )
    computed_ms: Mapped[int] = mapped_column(BigInteger)
    # schedule | demand_shift | delivery | settings | manual
    reason: Mapped[str] = mapped_column(String(32))
    demand_class: Mapped[str] = mapped_column(String(16))
    inputs: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    result: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    # the last time reorder_point/order_qty actually changed, and why
    changed_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    change_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
