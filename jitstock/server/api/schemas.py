"""Pydantic models at the HTTP boundary: Create / Update / Public per entity.

Update models are partial (PATCH): only fields sent are changed; ``null``
clears a nullable field and is refused for the others.  Public models never
carry secrets: suppliers show whether a webhook secret is set, and the secret
itself is returned once, when it is created or rotated.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit

import httpx
from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from jitstock import protocol
from jitstock.server.api.integral import integral_float
from jitstock.server.api.nul_guard import refuse_nul
from jitstock.server.db.models import API_ROLES, ORDER_STATES
from jitstock.server.db.secrets import WEBHOOK_SECRET_PREFIX
from jitstock.server.replenish.policy import MAX_ORDER_QTY

# Sites, agents and suppliers appear in MQTT topics, so they follow the topic rule.
NAME_PATTERN = protocol.NAME_RE.pattern
# One bin-id rule for the wire, the API and the docs (no '/': an id is one URL path segment).
BIN_ID_PATTERN = protocol.BIN_RE.pattern
SKU_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# A part heavier than a tonne, or a container heavier than the heaviest reading, is a typo;
# a part lighter than a milligram is below any load cell's resolution (and 5e-324 g turns
# every reading into an infinite count).
MIN_UNIT_WEIGHT_G = 1e-3
MAX_UNIT_WEIGHT_G = 1_000_000.0
MAX_TARE_G = protocol.MAX_GRAMS
# the largest order: what one ship notice or dock receipt can carry (replenish.policy)
MAX_QTY = MAX_ORDER_QTY
# A price beyond a million per part is a typo (and keeps sums far from overflow).
MAX_UNIT_COST = 1_000_000.0
# Epoch milliseconds a client may send: 1970 to 2200, far inside int64 and SQLite INTEGER.
MAX_EPOCH_MS = 7_258_118_400_000
# The longest deadline or lead time anyone configures: five years.
MAX_LEAD_TIME_S = 5 * 365 * 86_400

SiteId = Annotated[str, Field(pattern=NAME_PATTERN, examples=["plant-1"])]
AgentId = Annotated[str, Field(pattern=NAME_PATTERN, examples=["pi-07"])]
SupplierId = Annotated[str, Field(pattern=NAME_PATTERN, examples=["acme"])]
SkuId = Annotated[str, Field(pattern=SKU_ID_PATTERN, examples=["M6x20-DIN912"])]
BinId = Annotated[str, Field(pattern=BIN_ID_PATTERN, examples=["A-01"])]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Short = Annotated[str, Field(min_length=1, max_length=100)]
Channel = Annotated[str, Field(min_length=1, max_length=64)]
UnitWeight = Annotated[
    FiniteFloat,
    Field(ge=MIN_UNIT_WEIGHT_G, le=MAX_UNIT_WEIGHT_G, description="grams per part"),
]
Tare = Annotated[
    FiniteFloat, Field(ge=0, le=MAX_TARE_G, description="empty container, grams")
]
Qty = Annotated[int, Field(ge=0, le=MAX_QTY)]
UnitCost = Annotated[FiniteFloat, Field(ge=0, le=MAX_UNIT_COST)]
EpochMs = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS, description="epoch milliseconds")]
# A numeric row id in a path: SQL INTEGER is 64-bit signed, so larger is never found.
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
DeadlineS = Annotated[int, Field(ge=1, le=30 * 24 * 3600)]
Role = Literal["viewer", "manager", "admin"]
OrderState = Literal[
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
]
# Literals for OpenAPI enums; they must follow the DB's lists (a test imports this module).
assert get_args(Role) == API_ROLES
assert get_args(OrderState) == ORDER_STATES


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    # A URL the sender cannot use would fail every order at dispatch: refuse it here.
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("may not contain spaces or control characters")
    try:
        parts.port  # noqa: B018 - parses the port: out of range raises
        host = httpx.URL(value).host
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"not a usable URL: {exc}") from None
    if not host:
        raise ValueError("must name a host")
    return value


def _check_secret(value: str) -> str:
    if not value.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(
            f"must start with {WEBHOOK_SECRET_PREFIX!r} (Standard Webhooks secret)"
        )
    try:
        key = base64.b64decode(value[len(WEBHOOK_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be 'whsec_' followed by base64") from None
    if len(key) < 24:
        raise ValueError("key too short: use at least 24 random bytes")
    return value


WebhookUrl = Annotated[str, Field(max_length=2000), AfterValidator(_check_url)]
WebhookSecret = Annotated[str, Field(max_length=200), AfterValidator(_check_secret)]
# One address, as an SMTP relay takes it (no display name, no list).
EmailAddress = Annotated[
    str,
    Field(
        max_length=320,
        pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$",
        examples=["orders@example.com"],
    ),
]
OrderChannel = Annotated[
    Literal["api", "email"],
    Field(
        description="how new orders reach the supplier: `api` (webhook and/or MQTT) or "
        "`email` (a PDF purchase order to `email`, with signed links to acknowledge "
        "and announce shipment)"
    ),
]


class Input(BaseModel):
    """Request bodies: unknown fields are errors (a typo must not be silently ignored).

    Strict types: ``false`` is not 0 and 1 is not ``true``, ``"10"`` is not 10 (JSON
    has both, a client sending the wrong one has a bug).  An integral float is an
    integer, though (``10.0`` for an integer field, up to 2**53): JSON Schema's
    ``integer`` says so and many JSON encoders write numbers that way.  CSV imports,
    where every cell is text, validate with ``strict=False``.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return refuse_nul(value)

    @field_validator("*", mode="before")
    @classmethod
    def _integral_float(cls, value: Any, info: ValidationInfo) -> Any:
        return integral_float(cls, info.field_name, value)


class Patch(Input):
    """A partial update; fields in REQUIRED may be omitted but not set to null."""

    REQUIRED: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _no_null_required(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.REQUIRED:
            raise ValueError("may not be null")
        return value

    def changes(self) -> dict[str, Any]:
        """Only the fields the client sent."""
        return self.model_dump(exclude_unset=True)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The published schema says what the server takes: a field in REQUIRED may be
        left out, not sent as null (its ``anyOf`` loses the null branch)."""
        schema = handler(core_schema)
        props = handler.resolve_ref_schema(schema).get("properties", {})
        for name in cls.REQUIRED:
            prop = props.get(name)
            if not prop or "anyOf" not in prop:
                continue
            kept = [s for s in prop["anyOf"] if s.get("type") != "null"]
            del prop["anyOf"]
            if len(kept) == 1:
                prop.update(kept[0])
            else:
                prop["anyOf"] = kept
            if prop.get("default", 0) is None:
                del prop["default"]
        return schema


class Output(BaseModel):
    """Response bodies, built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


# --- sites -------------------------------------------------------------------

# Ship-to of a plant, printed in every order webhook (issue 13).
ShipTo = Annotated[
    str,
    Field(min_length=1, max_length=500, description="postal address suppliers ship to"),
]
DockName = Annotated[
    str,
    Field(min_length=1, max_length=200, description="receiving dock or gate"),
]


class SiteCreate(Input):
    """A new plant."""

    id: SiteId
    name: Name
    address: ShipTo | None = None
    dock: DockName | None = None


class SiteUpdate(Patch):
    """Change a plant."""

    REQUIRED: ClassVar[frozenset[str]] = frozenset({"name"})
    name: Name | None = None
    address: ShipTo | None = None
    dock: DockName | None = None


class SitePublic(Output):
    """A plant."""

    id: str
    name: str
    address: str | None = None
    dock: str | None = None


# --- SKUs --------------------------------------------------------------------


class SkuCreate(Input):
    """A new part number."""

    id: SkuId
    name: Name
    unit_weight_g: UnitWeight
    unit_cost: UnitCost | None = None
    barcode: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class SkuUpdate(Patch):
    """Change a part number."""

    REQUIRED: ClassVar[frozenset[str]] = frozenset({"name", "unit_weight_g"})
    name: Name | None = None
    unit_weight_g: UnitWeight | None = None
    unit_cost: UnitCost | None = None
    barcode: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class SkuPublic(Output):
    """A part number."""

    id: str
    name: str
    unit_weight_g: float
    unit_cost: float | None
    barcode: str | None


# --- suppliers ---------------------------------------------------------------


class SupplierCreate(Input):
    """A new supplier; a webhook secret is generated when none is given."""

    id: SupplierId
    name: Name
    webhook_url: WebhookUrl | None = None
    webhook_secret: WebhookSecret | None = None
    mqtt_orders: bool = False
    ack_deadline_s: DeadlineS | None = None
    contact: Annotated[str, Field(max_length=500)] | None = None
    email: EmailAddress | None = None
    order_channel: OrderChannel = "api"

    @model_validator(mode="after")
    def _email_channel_has_address(self) -> SupplierCreate:
        if self.order_channel == "email" and not self.email:
            raise ValueError("order_channel 'email' needs an email address")
        return self


class SupplierUpdate(Patch):
    """Change a supplier (setting webhook_secret replaces it)."""

    REQUIRED: ClassVar[frozenset[str]] = frozenset(
        {"name", "mqtt_orders", "webhook_secret", "order_channel"}
    )
    name: Name | None = None
    webhook_url: WebhookUrl | None = None
    webhook_secret: WebhookSecret | None = None
    mqtt_orders: bool | None = None
    ack_deadline_s: DeadlineS | None = None
    contact: Annotated[str, Field(max_length=500)] | None = None
    email: EmailAddress | None = None
    order_channel: OrderChannel | None = None


class SupplierPublic(Output):
    """A supplier, without its signing secret."""

    id: str
    name: str
    webhook_url: str | None
    webhook_secret_set: bool
    mqtt_orders: bool
    ack_deadline_s: int | None
    contact: str | None
    email: str | None
    order_channel: str


class SupplierWithSecret(SupplierPublic):
    """A supplier as returned once, on creation or secret rotation."""

    webhook_secret: str | None


# --- bins --------------------------------------------------------------------


class BinCreate(Input):
    """A new bin; agent_id + channel say which scale feeds it."""

    id: BinId
    site_id: SiteId
    agent_id: AgentId | None = None
    channel: Channel | None = None
    area: Short | None = None
    line: Short | None = None
    sku_id: SkuId
    supplier_id: SupplierId | None = None
    tare_g: Tare = 0.0
    unit_weight_g: UnitWeight | None = Field(
        default=None, description="grams per part; null uses the SKU's"
    )
    capacity: Qty | None = None
    reorder_point: Qty = 0
    order_qty: Qty = 0
    paused: bool = False


class BinUpdate(Patch):
    """Change a bin's configuration (live fields belong to ingest)."""

    REQUIRED: ClassVar[frozenset[str]] = frozenset(
        {"site_id", "sku_id", "tare_g", "reorder_point", "order_qty", "paused"}
    )
    site_id: SiteId | None = None
    agent_id: AgentId | None = None
    channel: Channel | None = None
    area: Short | None = None
    line: Short | None = None
    sku_id: SkuId | None = None
    supplier_id: SupplierId | None = None
    tare_g: Tare | None = None
    unit_weight_g: UnitWeight | None = None
    capacity: Qty | None = None
    reorder_point: Qty | None = None
    order_qty: Qty | None = None
    paused: bool | None = None


class BinPublic(Output):
    """A bin: configuration and live level."""

    id: str
    site_id: str
    agent_id: str | None
    channel: str | None
    area: str | None
    line: str | None
    sku_id: str
    supplier_id: str | None
    tare_g: float
    unit_weight_g: float | None
    capacity: int | None
    reorder_point: int
    order_qty: int
    paused: bool
    on_hand: int
    on_hand_confidence: float
    last_grams: float | None
    last_seen_ms: int | None
    sensor_ok: bool = Field(
        description="the scale's health as its agent reported it; GET /api/v1/levels "
        "also calls a weight below the bin's tare a fault"
    )
    sensor_fault: str | None
    pending_delivery_qty: int


# --- levels and history ------------------------------------------------------


class LevelPublic(BaseModel):
    """A bin's live level and what the reorder rule sees."""

    bin_id: str
    site_id: str
    sku_id: str
    on_hand: int
    confidence: float
    last_grams: float | None
    last_seen_ms: int | None
    pending_delivery_qty: int
    on_order_qty: int
    position: int = Field(description="on hand + delivered-but-unconfirmed + on order")
    reorder_point: int
    paused: bool
    sensor_ok: bool = Field(
        description="false when the bin's agent reports a scale fault, or when the last "
        "weight reads clearly below the bin's tare (a scale restarting, lifted or "
        "unplugged; such readings are not counted and on_hand keeps the last count)"
    )
    sensor_fault: str | None = Field(description="why sensor_ok is false")
    agent_id: str | None
    agent_online: bool | None = Field(description="null when no agent feeds the bin")


class HistoryPoint(BaseModel):
    """One raw reading or one downsampled bucket (None: no data in it)."""

    ts_ms: int
    grams: float | None
    count: int | float | None


class HistoryPublic(BaseModel):
    """A bin's history over [start_ms, end_ms)."""

    bin_id: str
    start_ms: int
    end_ms: int
    resolution_ms: int | None = Field(description="null: raw readings")
    agg: str | None
    truncated: bool = Field(description="raw only: more readings exist than limit")
    points: list[HistoryPoint]


# --- orders ------------------------------------------------------------------


class OrderPublic(Output):
    """A replenishment order."""

    id: str
    bin_id: str
    sku_id: str
    supplier_id: str
    site_id: str
    qty: int
    state: OrderState
    created_ms: int
    sent_ms: int | None
    acked_ms: int | None
    promised_ms: int | None
    delivered_ms: int | None
    delivered_qty: int | None
    attempts: int
    next_attempt_ms: int | None
    last_error: str | None
    trigger: dict[str, Any] | None
    # always sent (null until set): required in the published schema, as a client sees them
    shipped_ms: int | None
    asn_qty: int | None
    carrier_ref: str | None
    closed_ms: int | None
    bridge_for: str | None


class AttemptPublic(Output):
    """One webhook delivery attempt."""

    n: int
    at_ms: int
    status_code: int | None
    error: str | None
    latency_ms: float | None


class OrderDetail(OrderPublic):
    """An order with every delivery attempt."""

    attempt_log: list[AttemptPublic]


class AckRequest(Input):
    """A supplier's acknowledgement, optionally with a promised delivery time."""

    promised_ms: EpochMs | None = None


class DeliverRequest(Input):
    """Goods received for an order."""

    qty: Annotated[int, Field(gt=0, le=MAX_QTY)]


# --- keys and audit ----------------------------------------------------------


class KeyCreate(Input):
    """A new API key."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: Role


class KeyPublic(Output):
    """An API key without its secret."""

    id: int
    name: str
    role: str
    created_ms: int
    revoked: bool


class KeyCreated(KeyPublic):
    """A new API key with its plain value, shown this once."""

    key: str


class AuditPublic(Output):
    """One audit log row."""

    id: int
    at_ms: int
    actor: str
    action: str
    entity: str
    entity_id: str
    detail: dict[str, Any] | None


class ImportResult(BaseModel):
    """What a CSV import did (it did all of it, or nothing)."""

    entity: str
    created: int
    updated: int
    unchanged: int
    webhook_secrets: dict[str, str] = Field(
        default_factory=dict,
        description="suppliers only: secrets generated for new suppliers, shown once",
    )
