"""Dashboard: alerts (one unresolved per kind and entity) and dashboard users.

Revision ID: 0004_dashboard
Revises: 0001_initial
Create Date: 2026-11-27 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_dashboard"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types: a migration must not change when models do.
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNRESOLVED = sa.text("resolved_ms IS NULL")


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "alerts",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(120), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=True),
        sa.Column("bin_id", sa.String(64), nullable=True),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(36), nullable=True),
        sa.Column("supplier_id", sa.String(64), nullable=True),
        sa.Column("opened_ms", sa.BigInteger(), nullable=False),
        sa.Column("acked_ms", sa.BigInteger(), nullable=True),
        sa.Column("acked_by", sa.String(100), nullable=True),
        sa.Column("resolved_ms", sa.BigInteger(), nullable=True),
        sa.Column("detail", JSON_DOC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(
        "uq_alerts_one_open_per_entity",
        "alerts",
        ["kind", "entity"],
        unique=True,
        sqlite_where=UNRESOLVED,
        postgresql_where=UNRESOLVED,
    )
    op.create_index("ix_alerts_state_opened_ms", "alerts", ["state", "opened_ms"])
    op.create_index(op.f("ix_alerts_bin_id"), "alerts", ["bin_id"])
    op.create_table(
        "dashboard_users",
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(300), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_dashboard_users")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("dashboard_users")
    op.drop_index(op.f("ix_alerts_bin_id"), table_name="alerts")
    op.drop_index("ix_alerts_state_opened_ms", table_name="alerts")
    op.drop_index("uq_alerts_one_open_per_entity", table_name="alerts")
    op.drop_table("alerts")
