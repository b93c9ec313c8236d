"""A replacement order does not hold its bin's one open-order slot.

A dock receipt short of its order (or parts rejected at inspection) places a
replacement for the difference with the same supplier.  It took the place of the
bin's one open order waiting for its first delivery (``uq_orders_one_open_per_bin``),
so when the bin's position later fell to its reorder point with only that small
replacement open, the reorder rule's order was refused by the index and the bin ran
empty (found by an outside dock-life try: a 10-piece replacement, position 10 against
a reorder point of 20, no order, no ``reorder_blocked`` alert).  ``orders.replaces``
names the order a replacement stands in for; the index leaves such orders out, as it
does bridges.  Filled from each existing replacement's trigger (``{"replaces": id}``).

Revision ID: 0021_order_replaces
Revises: 0020_receipt_complete
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_order_replaces"
down_revision: str | Sequence[str] | None = "0020_receipt_complete"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_orders_one_open_per_bin"
AWAITING = (
    "state IN ('created', 'sent', 'acknowledged', 'shipped') AND bridge_for IS NULL"
)
NEW_WHERE = AWAITING + " AND replaces IS NULL"

_orders = sa.table(
    "orders",
    sa.column("id", sa.String),
    sa.column("trigger", sa.Text),
    sa.column("replaces", sa.String),
)


def _index(where: str) -> None:
    op.create_index(
        INDEX,
        "orders",
        ["bin_id"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("orders", sa.Column("replaces", sa.String(36), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_orders.c.id, sa.cast(_orders.c.trigger, sa.Text)).where(
            sa.cast(_orders.c.trigger, sa.Text).like('%"replaces"%')
        )
    ).all()
    for order_id, trigger in rows:
        try:
            replaces = json.loads(trigger).get("replaces")
        except (TypeError, ValueError, AttributeError):
            continue
        if isinstance(replaces, str):
            conn.execute(
                sa.update(_orders)
                .where(_orders.c.id == order_id)
                .values(replaces=replaces)
            )
    op.drop_index(INDEX, table_name="orders")
    _index(NEW_WHERE)


def downgrade() -> None:
    """Revert this revision (fails if a bin then has two open orders that hold a slot)."""
    op.drop_index(INDEX, table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("replaces")
    _index(AWAITING)
