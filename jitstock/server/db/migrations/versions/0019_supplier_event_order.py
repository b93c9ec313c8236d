"""One order's lifecycle events are stamped in the order they happen: an index to find
the order's last event.

``timestamp_ms`` is what a supplier orders one order's deliveries by (they may arrive
out of order).  It was the time the request started, taken before the transaction
waited for the database's write lock, so two promise changes sent together could
commit in one order and be stamped in the other (or with the same millisecond), and a
supplier sorting by it kept a promise the plant had already replaced.  The event is now
stamped at least a millisecond after the order's previous one, found through this
index.

Revision ID: 0019_supplier_event_order
Revises: 0018_receipt_request_key
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019_supplier_event_order"
down_revision: str | Sequence[str] | None = "0018_receipt_request_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_supplier_events_order_id_created_ms"


def upgrade() -> None:
    """Apply this revision."""
    op.create_index(INDEX, "supplier_events", ["order_id", "created_ms"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(INDEX, table_name="supplier_events")
