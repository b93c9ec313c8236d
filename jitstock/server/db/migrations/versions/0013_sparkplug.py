"""Sparkplug B ingest (issue 17): the table of gateway metrics mapped to bins.

Revision ID: 0013_sparkplug
Revises: 0012_provisioning
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_sparkplug"
down_revision: str | Sequence[str] | None = "0012_provisioning"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the model type: a migration must not change when models do.
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "sparkplug_mappings",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("group_id", sa.String(64), nullable=False),
        sa.Column("edge_node", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("bin_id", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("factor", sa.Float(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["bin_id"],
            ["bins.id"],
            name=op.f("fk_sparkplug_mappings_bin_id_bins"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sparkplug_mappings")),
        sa.UniqueConstraint(
            "group_id",
            "edge_node",
            "device",
            "metric",
            name=op.f("uq_sparkplug_mappings_group_id_edge_node_device_metric"),
        ),
    )
    op.create_index("ix_sparkplug_mappings_bin_id", "sparkplug_mappings", ["bin_id"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_sparkplug_mappings_bin_id", table_name="sparkplug_mappings")
    op.drop_table("sparkplug_mappings")
