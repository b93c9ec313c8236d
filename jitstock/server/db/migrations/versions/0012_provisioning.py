"""Device provisioning (issue 16): placeholder revision, filled in by the provisioning work.

Revision ID: 0012_provisioning
Revises: 0011_email_channel
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0012_provisioning"
down_revision: str | Sequence[str] | None = "0011_email_channel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""


def downgrade() -> None:
    """Revert this revision."""
