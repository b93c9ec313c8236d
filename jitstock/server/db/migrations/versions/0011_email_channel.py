"""Suppliers without an API (issue 13): an e-mail address and the channel orders go by.

``order_channel`` is ``api`` (webhook and/or MQTT, as before) or ``email`` (a PDF
purchase order with signed one-click links, jitstock.server.supplier.email_channel).

Revision ID: 0011_email_channel
Revises: 0010_supplier_contract
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_email_channel"
down_revision: str | Sequence[str] | None = "0010_supplier_contract"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("suppliers") as batch:
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
        batch.add_column(
            sa.Column(
                "order_channel", sa.String(16), nullable=False, server_default="api"
            )
        )


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("suppliers") as batch:
        batch.drop_column("order_channel")
        batch.drop_column("email")
