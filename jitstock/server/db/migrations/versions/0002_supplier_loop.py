"""Supplier loop: supplier items, order lifecycle columns and transitions, receipts,
inspections, escalations, supplier event outbox, supply alerts, supplier-scoped keys.

Revision ID: 0002_supplier_loop
Revises: 0001_initial
Create Date: 2026-11-27 05:30:00

The partial unique index behind "one trigger, one order" now covers the new open
states (shipped, part_received) and leaves out bridging orders, which an
escalation places beside a reduced order on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_supplier_loop"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types: a migration must not change when models.py does.
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
INDEX = "uq_orders_one_open_per_bin"
OLD_OPEN = sa.text("state IN ('created', 'sent', 'acknowledged')")
NEW_OPEN = sa.text(
    "state IN ('created', 'sent', 'acknowledged', 'shipped', 'part_received') "
    "AND bridge_for IS NULL"
)
ORDER_COLUMNS = (
    ("shipped_ms", sa.BigInteger()),
    ("asn_qty", sa.Integer()),
    ("carrier_ref", sa.String(200)),
    ("closed_ms", sa.BigInteger()),
    ("bridge_for", sa.String(36)),
    ("escalated_ms", sa.BigInteger()),
)


def _ms(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _id() -> sa.Column[int]:
    return sa.Column("id", AUTO_ID, autoincrement=True, nullable=False)


def upgrade() -> None:
    """Apply this revision."""
    op.drop_index(INDEX, table_name="orders")
    for name, type_ in ORDER_COLUMNS:
        op.add_column("orders", sa.Column(name, type_, nullable=True))
    op.create_index(
        INDEX,
        "orders",
        ["bin_id"],
        unique=True,
        sqlite_where=NEW_OPEN,
        postgresql_where=NEW_OPEN,
    )
    op.add_column(
        "skus",
        sa.Column(
            "inspection_required",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
        ),
    )
    op.add_column(
        "suppliers", sa.Column("webhook_secret_previous", sa.String(200), nullable=True)
    )
    op.add_column("suppliers", _ms("webhook_secret_previous_until_ms", nullable=True))
    op.add_column(
        "suppliers",
        sa.Column(
            "escalation_enabled", sa.Boolean(), server_default=sa.true(), nullable=False
        ),
    )
    op.add_column(
        "suppliers", sa.Column("inspect_every_n", sa.Integer(), nullable=True)
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("supplier_id", sa.String(64), nullable=True))
        batch.create_foreign_key(
            op.f("fk_api_keys_supplier_id_suppliers"),
            "suppliers",
            ["supplier_id"],
            ["id"],
        )

    op.create_table(
        "supplier_items",
        _id(),
        sa.Column("supplier_id", sa.String(64), nullable=False),
        sa.Column("sku_id", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="1", nullable=False),
        sa.Column("quoted_lead_time_s", sa.Integer(), nullable=True),
        sa.Column("pack_size", sa.Integer(), server_default="1", nullable=False),
        sa.Column("moq", sa.Integer(), server_default="1", nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.ForeignKeyConstraint(
            ["supplier_id"],
            ["suppliers.id"],
            name=op.f("fk_supplier_items_supplier_id_suppliers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sku_id"],
            ["skus.id"],
            name=op.f("fk_supplier_items_sku_id_skus"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supplier_items")),
        sa.UniqueConstraint(
            "supplier_id", "sku_id", name=op.f("uq_supplier_items_supplier_id_sku_id")
        ),
    )
    op.create_index(
        "ix_supplier_items_sku_id_priority", "supplier_items", ["sku_id", "priority"]
    )
    op.create_table(
        "order_transitions",
        _id(),
        sa.Column("order_id", sa.String(36), nullable=False),
        _ms("at_ms"),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("detail", JSON_DOC, nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_transitions_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_transitions")),
    )
    op.create_index(
        "ix_order_transitions_order_id_at_ms",
        "order_transitions",
        ["order_id", "at_ms"],
    )
    op.create_table(
        "receipts",
        _id(),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("bin_id", sa.String(64), nullable=False),
        sa.Column("supplier_id", sa.String(64), nullable=False),
        _ms("at_ms"),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("counted_qty", sa.Integer(), server_default="0", nullable=False),
        sa.Column("accepted_qty", sa.Integer(), nullable=True),
        sa.Column("scale_qty", sa.Integer(), nullable=True),
        sa.Column(
            "inspection_required",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
        ),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("scanner", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_receipts_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["bin_id"],
            ["bins.id"],
            name=op.f("fk_receipts_bin_id_bins"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["supplier_id"],
            ["suppliers.id"],
            name=op.f("fk_receipts_supplier_id_suppliers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
    )
    op.create_index("ix_receipts_bin_id_status", "receipts", ["bin_id", "status"])
    op.create_index(op.f("ix_receipts_supplier_id"), "receipts", ["supplier_id"])
    op.create_table(
        "inspections",
        _id(),
        sa.Column("receipt_id", AUTO_ID, nullable=False),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("supplier_id", sa.String(64), nullable=False),
        _ms("at_ms"),
        sa.Column("inspector", sa.String(100), nullable=False),
        sa.Column("accepted_qty", sa.Integer(), nullable=False),
        sa.Column("rejected_qty", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["receipts.id"],
            name=op.f("fk_inspections_receipt_id_receipts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_inspections_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["supplier_id"],
            ["suppliers.id"],
            name=op.f("fk_inspections_supplier_id_suppliers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspections")),
        sa.UniqueConstraint("receipt_id", name=op.f("uq_inspections_receipt_id")),
    )
    op.create_index(op.f("ix_inspections_supplier_id"), "inspections", ["supplier_id"])
    op.create_table(
        "escalations",
        _id(),
        _ms("at_ms"),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("supplier_id", sa.String(64), nullable=False),
        sa.Column("fallback_supplier_id", sa.String(64), nullable=True),
        sa.Column("bridge_order_id", sa.String(36), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("qty", sa.Integer(), server_default="0", nullable=False),
        sa.Column("detail", JSON_DOC, nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_escalations_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["supplier_id"],
            ["suppliers.id"],
            name=op.f("fk_escalations_supplier_id_suppliers"),
        ),
        sa.ForeignKeyConstraint(
            ["fallback_supplier_id"],
            ["suppliers.id"],
            name=op.f("fk_escalations_fallback_supplier_id_suppliers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
    )
    op.create_index(op.f("ix_escalations_supplier_id"), "escalations", ["supplier_id"])
    op.create_table(
        "supplier_events",
        _id(),
        sa.Column("supplier_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("payload", JSON_DOC, nullable=False),
        _ms("created_ms"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        _ms("next_attempt_ms", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["supplier_id"],
            ["suppliers.id"],
            name=op.f("fk_supplier_events_supplier_id_suppliers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supplier_events")),
    )
    op.create_index(
        "ix_supplier_events_state_next_attempt_ms",
        "supplier_events",
        ["state", "next_attempt_ms"],
    )
    op.create_table(
        "supply_alerts",
        _id(),
        _ms("at_ms"),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("bin_id", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(36), nullable=True),
        sa.Column("supplier_id", sa.String(64), nullable=True),
        sa.Column("detail", JSON_DOC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supply_alerts")),
    )
    op.create_index("ix_supply_alerts_kind_at_ms", "supply_alerts", ["kind", "at_ms"])


def downgrade() -> None:
    """Revert this revision (supplier-loop data is lost; orders in new states keep them)."""
    for table in (
        "supply_alerts",
        "supplier_events",
        "escalations",
        "inspections",
        "receipts",
        "order_transitions",
        "supplier_items",
    ):
        op.drop_table(table)
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint(
            op.f("fk_api_keys_supplier_id_suppliers"), type_="foreignkey"
        )
        batch.drop_column("supplier_id")
    for name in (
        "inspect_every_n",
        "escalation_enabled",
        "webhook_secret_previous_until_ms",
        "webhook_secret_previous",
    ):
        op.drop_column("suppliers", name)
    op.drop_column("skus", "inspection_required")
    op.drop_index(INDEX, table_name="orders")
    for name, _ in ORDER_COLUMNS:
        op.drop_column("orders", name)
    op.create_index(
        INDEX,
        "orders",
        ["bin_id"],
        unique=True,
        sqlite_where=OLD_OPEN,
        postgresql_where=OLD_OPEN,
    )
