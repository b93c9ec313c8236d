"""Replenishment: per-bin policy settings, SKU ABC class, the bins' last policy computation.

Revision ID: 0003_replenishment
Revises: 0001_initial
Create Date: 2026-11-27 05:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_replenishment"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the model type: a migration must not change when models.py does.
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

BIN_COLUMNS = (
    ("policy", sa.String(8)),
    ("service_level", sa.Float()),
    ("manual_min", sa.Integer()),
    ("manual_max", sa.Integer()),
    ("review_period_days", sa.Float()),
    ("prior_daily_demand", sa.Float()),
    ("lead_time_s", sa.Integer()),
    ("pack_size", sa.Integer()),
    ("moq", sa.Integer()),
)


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("bins") as batch:
        for name, type_ in BIN_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table("skus") as batch:
        batch.add_column(sa.Column("abc_class", sa.String(1), nullable=True))
    op.create_table(
        "bin_policies",
        sa.Column("bin_id", sa.String(64), nullable=False),
        sa.Column("computed_ms", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("demand_class", sa.String(16), nullable=False),
        sa.Column("inputs", JSON_DOC, nullable=False),
        sa.Column("result", JSON_DOC, nullable=False),
        sa.Column("changed_ms", sa.BigInteger(), nullable=True),
        sa.Column("change_reason", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(
            ["bin_id"],
            ["bins.id"],
            name=op.f("fk_bin_policies_bin_id_bins"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bin_id", name=op.f("pk_bin_policies")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("bin_policies")
    with op.batch_alter_table("skus") as batch:
        batch.drop_column("abc_class")
    with op.batch_alter_table("bins") as batch:
        for name, _ in reversed(BIN_COLUMNS):
            batch.drop_column(name)
