"""Sign-in a security reviewer accepts: session keys expire and belong to a user (or to
the API key a browser session was opened with); users can be disabled.

Sign-in keys issued before this revision never expired and are not tied to their
user, so they are revoked here: people sign in once more after the upgrade.

Revision ID: 0008_signin
Revises: 0006_inventory_trust
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_signin"
down_revision: str | Sequence[str] | None = "0006_inventory_trust"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("username", sa.String(100), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.BigInteger(), nullable=True))
        batch.create_index("ix_api_keys_username", ["username"])
    with op.batch_alter_table("dashboard_users") as batch:
        batch.add_column(
            sa.Column(
                "disabled", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch.add_column(
            sa.Column("password_changed_ms", sa.BigInteger(), nullable=True)
        )
    op.execute(
        sa.text(
            "UPDATE api_keys SET revoked = :yes WHERE name LIKE 'login:%' AND NOT revoked"
        ).bindparams(yes=True)
    )


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("dashboard_users") as batch:
        batch.drop_column("password_changed_ms")
        batch.drop_column("disabled")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_username")
        batch.drop_column("parent_id")
        batch.drop_column("username")
        batch.drop_column("expires_ms")
