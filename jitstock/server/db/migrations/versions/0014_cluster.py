"""Cluster (issue 16): applied (agent, seq) batches above each agent's low-water mark.

Revision ID: 0014_cluster
Revises: 0013_sparkplug
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_cluster"
down_revision: str | Sequence[str] | None = "0013_sparkplug"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Changes every node must see at once (PostgreSQL only): what the bin registry holds, and
# new orders (their dispatch).  Ingest's own writes (counts, reading times) are left out:
# they would notify every flush.  pg_notify folds equal payloads of one transaction.
CHANNEL = "jitstock_changes"
_TRIGGERS = {
    "bins": "INSERT OR DELETE OR UPDATE OF site_id, agent_id, sku_id, tare_g, "
    "unit_weight_g, reorder_point",
    "skus": "UPDATE OF unit_weight_g",
    "agents": "INSERT OR DELETE OR UPDATE OF site_id",
    "orders": "INSERT OR UPDATE OF state",
}


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "applied_batches",
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("applied_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_applied_batches_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", "seq", name=op.f("pk_applied_batches")),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION jitstock_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$"
    )
    for table, events in _TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER jitstock_notify_{table} AFTER {events} ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION jitstock_notify_change()"
        )


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == "postgresql":
        for table in _TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS jitstock_notify_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS jitstock_notify_change()")
    op.drop_table("applied_batches")
