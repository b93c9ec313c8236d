"""Device provisioning (issue 16): an agent's MQTT client at the broker and whether it is enabled.

``mqtt_username`` is the Mosquitto Dynamic Security client the server made for the
agent (None: the agent's credentials live in a static password file, as before);
``enabled`` is false while that client is disabled at the broker.

Revision ID: 0012_provisioning
Revises: 0011_email_channel
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_provisioning"
down_revision: str | Sequence[str] | None = "0011_email_channel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("agents") as batch:
        batch.add_column(
            sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("mqtt_username", sa.String(64), nullable=True))


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("mqtt_username")
        batch.drop_column("enabled")
