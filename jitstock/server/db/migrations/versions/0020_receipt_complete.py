"""A dock receipt keeps whether the request said the order is complete.

An ``Idempotency-Key`` names one request: a retry with the same key and qty got the
first receipt back, but a retry that changed ``complete`` (``false`` the first time,
``true`` now) was answered as if it were the same request, and the order stayed
part-received while the client believed it closed.  ``receipts.complete`` keeps what
the first request said, so such a retry is refused (422) like one with another qty.
NULL on receipts recorded before this revision (and on scale receipts): not compared.

Revision ID: 0020_receipt_complete
Revises: 0019_supplier_event_order
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_receipt_complete"
down_revision: str | Sequence[str] | None = "0019_supplier_event_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("receipts", sa.Column("complete", sa.Boolean(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("receipts") as batch:
        batch.drop_column("complete")
