"""Cluster: supplier, supplier item, site and SKU name changes notify every node.

A node keeps what an order's claim and body read about suppliers, supplier items,
sites and SKU names between flushes (:mod:`jitstock.server.catalog_cache`).  A change
made through another node's API (a new webhook URL, a rotated secret, a supplier item
switched off) must reach this node's next order at once, not at the 10 s reload:
these triggers notify ``jitstock_changes`` and every node reloads its registry, which
ends the cached generation.  Only the columns the cache holds notify.

Revision ID: 0015_catalog_notify
Revises: 0014_cluster
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015_catalog_notify"
down_revision: str | Sequence[str] | None = "0014_cluster"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# trigger name -> (table, events); jitstock_notify_change() is migration 0014's
_TRIGGERS = {
    "jitstock_notify_suppliers": (
        "suppliers",
        "INSERT OR DELETE OR UPDATE OF webhook_url, webhook_secret, "
        "webhook_secret_previous, webhook_secret_previous_until_ms, order_channel, "
        "email, mqtt_orders",
    ),
    "jitstock_notify_supplier_items": (
        "supplier_items",
        "INSERT OR DELETE OR UPDATE OF supplier_id, sku_id, priority, active, "
        "supplier_sku, quoted_lead_time_s",
    ),
    "jitstock_notify_sites": (
        "sites",
        "INSERT OR DELETE OR UPDATE OF name, address, dock",
    ),
    "jitstock_notify_sku_names": ("skus", "INSERT OR DELETE OR UPDATE OF name"),
}


def upgrade() -> None:
    """Apply this revision."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, events) in _TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {events} ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION jitstock_notify_change()"
        )


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, _events) in _TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
