"""Ingest dead letters: MQTT messages that could not be applied, kept for an admin to replay.

Revision ID: 0007_dead_letters
Revises: 0006_inventory_trust
Create Date: 2026-12-01 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_dead_letters"
down_revision: str | Sequence[str] | None = "0006_inventory_trust"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the model type: a migration must not change when models do.
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "dead_letters",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("replayed_ms", sa.BigInteger(), nullable=True),
        sa.Column("replayed_by", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index("ix_dead_letters_at_ms", "dead_letters", ["at_ms"])


def downgrade() -> None:
    """Undo this revision."""
    op.drop_index("ix_dead_letters_at_ms", table_name="dead_letters")
    op.drop_table("dead_letters")
