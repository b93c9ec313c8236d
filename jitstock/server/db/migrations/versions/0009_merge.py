"""Join the dead-letter and sign-in branches (built in parallel from 0006).

Revision ID: 0009_merge
Revises: 0007_dead_letters, 0008_signin
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0009_merge"
down_revision: str | Sequence[str] | None = ("0007_dead_letters", "0008_signin")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to do: the branches touch different tables and columns."""


def downgrade() -> None:
    """Nothing to undo."""
