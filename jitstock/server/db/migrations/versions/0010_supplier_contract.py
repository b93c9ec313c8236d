"""The supplier contract (issue 13): ship-to address and dock per site, the supplier's
own part number per supplier item — both carried in every order webhook.

Revision ID: 0010_supplier_contract
Revises: 0009_merge
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_supplier_contract"
down_revision: str | Sequence[str] | None = "0009_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("address", sa.String(500), nullable=True))
        batch.add_column(sa.Column("dock", sa.String(200), nullable=True))
    with op.batch_alter_table("supplier_items") as batch:
        batch.add_column(sa.Column("supplier_sku", sa.String(100), nullable=True))


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("supplier_items") as batch:
        batch.drop_column("supplier_sku")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("dock")
        batch.drop_column("address")
