"""Inventory position you can trust: agents as records (reported state, status time,
which bins they may receive into) and receiving discrepancies.

Revision ID: 0006_inventory_trust
Revises: 0005_merge
Create Date: 2026-11-29 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_inventory_trust"
down_revision: str | Sequence[str] | None = "0005_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types: a migration must not change when models do.
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("reported_state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("status_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("receive_bins", JSON_DOC, nullable=True))
        batch.add_column(sa.Column("description", sa.String(200), nullable=True))
    # Agents that reported before this revision: their 'online' flag came from status.
    op.execute(
        "UPDATE agents SET reported_state = CASE WHEN online THEN 'online' ELSE 'offline' END "
        "WHERE version IS NOT NULL OR sensors IS NOT NULL"
    )
    op.create_table(
        "receiving_discrepancies",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("bin_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=True),
        sa.Column("receipt_id", sa.BigInteger(), nullable=True),
        sa.Column("supplier_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("detail", JSON_DOC, nullable=True),
        sa.Column("resolved_ms", sa.BigInteger(), nullable=True),
        sa.Column("resolved_by", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receiving_discrepancies")),
    )
    op.create_index(
        "ix_receiving_discrepancies_bin_id_at_ms",
        "receiving_discrepancies",
        ["bin_id", "at_ms"],
    )


def downgrade() -> None:
    """Undo this revision."""
    op.drop_index(
        "ix_receiving_discrepancies_bin_id_at_ms", table_name="receiving_discrepancies"
    )
    op.drop_table("receiving_discrepancies")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("description")
        batch.drop_column("receive_bins")
        batch.drop_column("status_ms")
        batch.drop_column("reported_state")
