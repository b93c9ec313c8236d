"""Cluster tables (issue 16): the (agent, seq) batches applied above each agent's
low-water mark, so any node may apply any batch, in any order, exactly once."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from jitstock.server.db.models import Base


class AppliedBatch(Base):
    """One applied (agent, seq) above the agent's contiguous low-water mark
    (``agent_cursors.last_seq``); rows at or below it are pruned by the leader."""

    __tablename__ = "applied_batches"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    applied_ms: Mapped[int] = mapped_column(BigInteger)
