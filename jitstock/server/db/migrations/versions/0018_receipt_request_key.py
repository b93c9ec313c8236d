"""A dock receipt can carry the client's Idempotency-Key: a retried POST records it once.

A partial ``POST /orders/{id}/receive`` sent twice (a dock terminal retrying after a
lost answer) recorded two receipts, and the second sat in the position as goods
waiting for put-away for the whole put-away window.  ``receipts.request_key`` keeps
the key a request came with, unique per order, so the retry finds the first receipt.

Revision ID: 0018_receipt_request_key
Revises: 0017_part_received
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_receipt_request_key"
down_revision: str | Sequence[str] | None = "0017_part_received"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_receipts_order_request_key"


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("receipts", sa.Column("request_key", sa.String(200), nullable=True))
    # NULLs are distinct in a unique index (SQLite and PostgreSQL): receipts without a key
    # (scale, label scan, a client that sends none) are not limited
    op.create_index(INDEX, "receipts", ["order_id", "request_key"], unique=True)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(INDEX, table_name="receipts")
    with op.batch_alter_table("receipts") as batch:
        batch.drop_column("request_key")
