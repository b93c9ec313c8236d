"""State DB tables of the dashboard (issue 6): alerts and dashboard users.

Same conventions as :mod:`jitstock.server.db.models`.  An alert is open while
``resolved_ms`` is NULL; a partial unique index keeps one unresolved alert per
(kind, entity), so raising the same condition twice (or from two server
processes) never duplicates it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from jitstock.server.db.models import AutoId, Base, JsonDoc

ALERT_STATES = ("open", "acknowledged", "resolved")
ONE_OPEN_ALERT_INDEX = "uq_alerts_one_open_per_entity"
_UNRESOLVED_SQL = "resolved_ms IS NULL"


class Alert(Base):
    """Something a line manager should look at, de-duplicated by (kind, entity) while unresolved."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            ONE_OPEN_ALERT_INDEX,
            "kind",
            "entity",
            unique=True,
            sqlite_where=text(_UNRESOLVED_SQL),
            postgresql_where=text(_UNRESOLVED_SQL),
        ),
        Index("ix_alerts_state_opened_ms", "state", "opened_ms"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    # "agent:<id>", "bin:<id>", "order:<id>", "supplier:<id>": what the alert is about
    entity: Mapped[str] = mapped_column(String(120))
    state: Mapped[str] = mapped_column(String(16), default="open")  # ALERT_STATES
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    message: Mapped[str] = mapped_column(Text)
    site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bin_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    agent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    supplier_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    opened_ms: Mapped[int] = mapped_column(BigInteger)
    acked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    resolved_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)


class DashboardUser(Base):
    """A person who signs in with user name and password (scrypt hash); role as API keys."""

    __tablename__ = "dashboard_users"

    username: Mapped[str] = mapped_column(String(100), primary_key=True)
    # "scrypt$n$r$p$salt_hex$hash_hex"
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(16))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # A disabled user cannot sign in; the row stays (audit trail, re-enable).
    disabled: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    password_changed_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
