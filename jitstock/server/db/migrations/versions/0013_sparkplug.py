"""Sparkplug B ingest (issue 17): placeholder revision, filled in by the Sparkplug B work.

Revision ID: 0013_sparkplug
Revises: 0012_provisioning
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0013_sparkplug"
down_revision: str | Sequence[str] | None = "0012_provisioning"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""


def downgrade() -> None:
    """Revert this revision."""
