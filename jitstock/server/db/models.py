"""State DB schema: SQLAlchemy 2 typed declarative models.

Conventions (kept so issues 4 and 5 can extend the schema by migration alone):

- Ids the plant chooses (sites, SKUs, suppliers, agents, bins) are strings;
  orders get uuid4 strings, which are also the webhook idempotency key.
- Times are integer milliseconds since the Unix epoch (BIGINT: 32 bits overflow).
- Enumerated strings (order state, event kind, key role) are plain VARCHARs checked
  in code, not CHECK constraints: the supplier loop adds states (shipped, received,
  closed) and roles (supplier), and changing a CHECK on SQLite rebuilds the table.
- Constraint names follow ``NAMING_CONVENTION`` so later migrations can drop them
  by name, including in SQLite batch mode.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The supplier loop's lifecycle (jitstock.server.supplier.lifecycle); 'delivered' is the
# manager's one-step /deliver shortcut of issue 3, kept for API compatibility.
ORDER_STATES = (
    "created",
    "sent",
    "acknowledged",
    "shipped",
    "part_received",
    "received",
    "closed",
    "delivered",
    "failed",
    "cancelled",
)
# States in which an order still counts as "on order" for the inventory position.
OPEN_ORDER_STATES = (
    "created",
    "sent",
    "acknowledged",
    "shipped",
    "part_received",
)
EVENT_KINDS = ("consumption", "refill", "recount", "delivery")
API_ROLES = ("viewer", "manager", "admin")
# Open orders still waiting for their first delivery: a bin has at most one (besides
# bridges).  A part-received order is not one of them: when what is still to come on
# it leaves the position at or below the reorder point, the bin orders again beside it
# (else the bin runs empty waiting for a remainder that cannot lift it).
AWAITING_DELIVERY_STATES = ("created", "sent", "acknowledged", "shipped")
# Name of the partial unique index behind "one trigger, one order".
ONE_OPEN_ORDER_INDEX = "uq_orders_one_open_per_bin"
# Bridging orders (escalation beside a reduced order) and replacements (for what was
# short or rejected at receipt) are the sanctioned second open orders: neither holds a
# bin's one slot, so a bin whose position falls to its reorder point with only such an
# order open orders again (a 10-piece replacement once kept a bin from reordering until
# it ran empty).
_OPEN_STATES_SQL = (
    "state IN ('created', 'sent', 'acknowledged', 'shipped') AND bridge_for IS NULL "
    "AND replaces IS NULL"
)

# Auto-increment ids: BIGINT on PostgreSQL, but SQLite only auto-increments a
# column declared exactly INTEGER PRIMARY KEY (the rowid alias).
AutoId = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


def new_order_id() -> str:
    """A fresh order id (uuid4 string)."""
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    """Declarative base with deterministic constraint names."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Site(Base):
    """A plant."""

    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Ship-to for suppliers (issue 13): postal address and receiving dock of the plant.
    address: Mapped[str | None] = mapped_column(String(500), nullable=True)
    dock: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Sku(Base):
    """A part number kept in bins."""

    __tablename__ = "skus"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit_weight_g: Mapped[float] = mapped_column(Float)
    # Float, not Numeric: cost feeds ABC ranking, not accounting, and SQLite has no decimals.
    unit_cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    barcode: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    abc_class: Mapped[str | None] = mapped_column(String(1), nullable=True)  # issue 4
    inspection_required: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )


class Supplier(Base):
    """A supplier that receives orders by signed webhook and/or MQTT (``order_channel``
    'api'), or by e-mail with a PDF purchase order and signed links ('email')."""

    __tablename__ = "suppliers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    # Standard Webhooks secret: "whsec_" + base64 of the HMAC key.
    webhook_secret: Mapped[str | None] = mapped_column(String(200), nullable=True)
    mqtt_orders: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    ack_deadline_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    contact: Mapped[str | None] = mapped_column(String(500), nullable=True)
    webhook_secret_previous: Mapped[str | None] = mapped_column(
        String(200), nullable=True
    )
    webhook_secret_previous_until_ms: Mapped[int | None] = mapped_column(
        BigInteger, nullable=True
    )
    escalation_enabled: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true()
    )
    inspect_every_n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Suppliers without an API (issue 13): where 'email' orders go.
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    order_channel: Mapped[str] = mapped_column(
        String(16), default="api", server_default="api"
    )


class Agent(Base):
    """An edge agent (a Pi, a PLC, a dock scanner station): a record of its own.

    ``reported_state`` is what its retained status said (None: it never sent one,
    which docs/protocol.md allows); ``last_seen_ms`` is its last traffic of any
    kind.  ``online`` is kept for compatibility: reported online, or traffic
    without a status.  ``receive_bins`` names the bins its scanners may receive
    goods into (None: the bins it feeds; ``["*"]``: any bin of its site).
    ``mqtt_username`` is the broker client the server provisioned for it (Mosquitto
    Dynamic Security; None: its credentials are made by hand), ``enabled`` false
    while that client is disabled at the broker.
    """

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_seen_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reported_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    receive_bins: Mapped[list[str] | None] = mapped_column(JsonDoc, nullable=True)
    description: Mapped[str | None] = mapped_column(String(200), nullable=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sensors: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonDoc, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    mqtt_username: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AgentCursor(Base):
    """Highest (agent, seq) applied, so a re-sent batch is applied once."""

    __tablename__ = "agent_cursors"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    last_seq: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Bin(Base):
    """A bin on a scale channel: calibration, replenishment settings and live level."""

    __tablename__ = "bins"
    # One scale channel of one agent feeds at most one bin.
    __table_args__ = (UniqueConstraint("agent_id", "channel"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"), nullable=True)
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    area: Mapped[str | None] = mapped_column(String(100), nullable=True)
    line: Mapped[str | None] = mapped_column(String(100), nullable=True)
    sku_id: Mapped[str] = mapped_column(ForeignKey("skus.id"), index=True)
    supplier_id: Mapped[str | None] = mapped_column(
        ForeignKey("suppliers.id"), nullable=True, index=True
    )
    tare_g: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # None: use the SKU's unit weight.
    unit_weight_g: Mapped[float | None] = mapped_column(Float, nullable=True)
    capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reorder_point: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    order_qty: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    on_hand: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    on_hand_confidence: Mapped[float] = mapped_column(
        Float, default=0.0, server_default="0"
    )
    last_grams: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_seen_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sensor_ok: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true()
    )
    sensor_fault: Mapped[str | None] = mapped_column(String(200), nullable=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Delivered through the API but not yet confirmed by the scale.
    pending_delivery_qty: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )
    # Replenishment settings (issue 4, jitstock.server.replenish); None = learned / default.
    policy: Mapped[str | None] = mapped_column(String(8), nullable=True)
    service_level: Mapped[float | None] = mapped_column(Float, nullable=True)
    manual_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    manual_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    review_period_days: Mapped[float | None] = mapped_column(Float, nullable=True)
    prior_daily_demand: Mapped[float | None] = mapped_column(Float, nullable=True)
    lead_time_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pack_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    moq: Mapped[int | None] = mapped_column(Integer, nullable=True)

    sku: Mapped[Sku] = relationship()
    supplier: Mapped[Supplier | None] = relationship()

    @property
    def effective_unit_weight_g(self) -> float:
        """The bin's own unit weight, else its SKU's."""
        return (
            self.unit_weight_g
            if self.unit_weight_g is not None
            else self.sku.unit_weight_g
        )


# A bin's unit weight in a query that joins its Sku: its own, else its SKU's (what
# Bin.effective_unit_weight_g gives for a loaded row).
BIN_UNIT_WEIGHT_G = func.coalesce(Bin.unit_weight_g, Sku.unit_weight_g)


class BinEvent(Base):
    """A change of a bin's count: what demand forecasting and receiving learn from."""

    __tablename__ = "bin_events"
    __table_args__ = (Index("ix_bin_events_bin_id_ts_ms", "bin_id", "ts_ms"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    bin_id: Mapped[str] = mapped_column(ForeignKey("bins.id", ondelete="CASCADE"))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))  # one of EVENT_KINDS
    delta: Mapped[int] = mapped_column(Integer)
    on_hand_after: Mapped[int] = mapped_column(Integer)


class Order(Base):
    """A replenishment order: the transactional outbox row the dispatcher sends."""

    __tablename__ = "orders"
    __table_args__ = (
        # "One trigger, one order", enforced by the database across processes.
        Index(
            ONE_OPEN_ORDER_INDEX,
            "bin_id",
            unique=True,
            sqlite_where=text(_OPEN_STATES_SQL),
            postgresql_where=text(_OPEN_STATES_SQL),
        ),
        # The dispatcher's claim query: due orders by state and time.
        Index("ix_orders_state_next_attempt_ms", "state", "next_attempt_ms"),
        Index("ix_orders_supplier_id_state", "supplier_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_order_id)
    bin_id: Mapped[str] = mapped_column(ForeignKey("bins.id"))
    sku_id: Mapped[str] = mapped_column(ForeignKey("skus.id"))
    supplier_id: Mapped[str] = mapped_column(ForeignKey("suppliers.id"))
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    qty: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(
        String(16), default="created"
    )  # one of ORDER_STATES
    created_ms: Mapped[int] = mapped_column(BigInteger)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    promised_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    delivered_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    delivered_qty: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    trigger: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    shipped_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    asn_qty: Mapped[int | None] = mapped_column(Integer, nullable=True)
    carrier_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    closed_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bridge_for: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # a replacement: the order whose shortfall or rejects it replaces (0021)
    replaces: Mapped[str | None] = mapped_column(String(36), nullable=True)
    escalated_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # the order.created body as its first attempt sent it: every retry sends these bytes
    # (same webhook-id, same body), whatever changed in the SKU, site or supplier item since
    created_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    attempt_log: Mapped[list[OrderAttempt]] = relationship(
        order_by="OrderAttempt.n", back_populates="order", passive_deletes=True
    )


def holds_order_slot() -> ColumnElement[bool]:
    """SQL: the order is the bin's one open order waiting for its first delivery (what
    ``uq_orders_one_open_per_bin`` allows once per bin): not a bridge, not a replacement."""
    return and_(
        Order.state.in_(AWAITING_DELIVERY_STATES),
        Order.bridge_for.is_(None),
        Order.replaces.is_(None),
    )


class OrderAttempt(Base):
    """One delivery attempt of an order; inserted when claimed, completed after the send."""

    __tablename__ = "order_attempts"
    # The attempt number doubles as a fencing token: one row per (order, n).
    __table_args__ = (UniqueConstraint("order_id", "n"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    n: Mapped[int] = mapped_column(Integer)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    # Both None after the send: the process died mid-attempt (outcome unknown).
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)

    order: Mapped[Order] = relationship(back_populates="attempt_log")


class ApiKey(Base):
    """An API key, stored only as a hash (see jitstock.server.db.secrets)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # one of API_ROLES
    created_ms: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    supplier_id: Mapped[str | None] = mapped_column(
        ForeignKey("suppliers.id"), nullable=True
    )
    # Session keys (a dashboard sign-in) expire; machine keys have no expiry.
    expires_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The dashboard user a sign-in key belongs to: it dies with the user.
    username: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    # The API key a browser session was opened with: revoking that key ends the session.
    parent_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AuditLog(Base):
    """Who did what to which entity, and why."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity_entity_id", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    entity: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)


# Issue 5's tables (supplier loop) live in their own module on the same Base.
from jitstock.server.db import alert_models as alert_models  # noqa: E402
from jitstock.server.db import cluster_models as cluster_models  # noqa: E402
from jitstock.server.db import deadletter_models as deadletter_models  # noqa: E402
from jitstock.server.db import replenish_models as replenish_models  # noqa: E402
from jitstock.server.db import sparkplug_models as sparkplug_models  # noqa: E402
from jitstock.server.db import supplier_models as supplier_models  # noqa: E402
