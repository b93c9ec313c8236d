"""Orders keep the ``order.created`` body their first attempt sent.

A retry carries the same webhook-id, so it must carry the same bytes: a supplier that
handled an attempt whose answer was lost drops the retry as a duplicate, and a body
rendered again after the SKU's name or the site's dock changed would not be the one it
acted on.

Revision ID: 0016_order_body
Revises: 0015_catalog_notify
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_order_body"
down_revision: str | Sequence[str] | None = "0015_catalog_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("orders", sa.Column("created_body", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    op.drop_column("orders", "created_body")
