"""A part-received order no longer blocks the bin's next order.

The partial unique index ``uq_orders_one_open_per_bin`` counted ``part_received``
orders, so a bin whose position (on hand + the remainder still to come) fell to its
reorder point while an order was part-received could not order again, and ran empty
waiting for a remainder too small to lift it.  The index now covers the orders still
waiting for their first delivery (created, sent, acknowledged, shipped): still one
trigger, one order.

Revision ID: 0017_part_received
Revises: 0016_order_body
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_part_received"
down_revision: str | Sequence[str] | None = "0016_order_body"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_orders_one_open_per_bin"
OLD_OPEN = sa.text(
    "state IN ('created', 'sent', 'acknowledged', 'shipped', 'part_received') "
    "AND bridge_for IS NULL"
)
NEW_OPEN = sa.text(
    "state IN ('created', 'sent', 'acknowledged', 'shipped') AND bridge_for IS NULL"
)


def _index(where: sa.TextClause) -> None:
    op.create_index(
        INDEX,
        "orders",
        ["bin_id"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def upgrade() -> None:
    """Apply this revision."""
    op.drop_index(INDEX, table_name="orders")
    _index(NEW_OPEN)


def downgrade() -> None:
    """Revert this revision (fails while a bin has two such open orders)."""
    op.drop_index(INDEX, table_name="orders")
    _index(OLD_OPEN)
