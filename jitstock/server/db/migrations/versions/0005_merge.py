"""Join the supplier loop, replenishment and dashboard branches (built in parallel from 0001).

Revision ID: 0005_merge
Revises: 0002_supplier_loop, 0003_replenishment, 0004_dashboard
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0005_merge"
down_revision: str | Sequence[str] | None = (
    "0002_supplier_loop",
    "0003_replenishment",
    "0004_dashboard",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to do: the branches touch different tables and columns."""


def downgrade() -> None:
    """Nothing to undo."""
