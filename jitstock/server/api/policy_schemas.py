"""Pydantic models of the replenishment policy endpoints (issue 4)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationInfo,
    field_validator,
)

from jitstock.server.api.integral import integral_float
from jitstock.server.api.schemas import MAX_LEAD_TIME_S, MAX_QTY

# More than a million parts a day from one bin is a typo (and keeps products in float range).
MAX_DAILY_DEMAND = 1_000_000.0

PolicyKind = Literal["s,Q", "s,S", "R,S"]


class PolicyChange(BaseModel):
    """One change of a bin's reorder point / order quantity, from the audit log."""

    at_ms: int
    actor: str
    reason: str | None
    why: str | None
    from_: dict[str, Any] | None = Field(default=None, alias="from")
    to: dict[str, Any] | None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class PolicyExplain(BaseModel):
    """Why a bin orders when it does: the numbers and what they were computed from."""

    bin_id: str
    stored: bool = Field(
        description="false: never computed, these numbers are a preview"
    )
    computed_ms: int | None
    reason: str | None = Field(description="what triggered the last computation")
    policy: str
    demand_class: str
    forecast_method: str
    rate_per_day: float | None
    sigma_per_day: float | None
    lead_time_days: float | None
    sigma_lead_time_days: float | None
    lead_time_source: str
    deliveries: int
    on_time_rate: float | None
    abc_class: str | None
    service_level: float
    z: float | None
    safety_stock: float | None
    undershoot: float | None = Field(
        default=None,
        description="expected units the crossing pick lands below the trigger "
        "(E[X²]/2E[X] of pick sizes). Part of reorder_point beside safety_stock only "
        "where the normal curve is used; 0 where the reorder point is solved on the "
        "lead-time demand draws (orders of whole Q leave no undershoot to cover there)",
    )
    reorder_point: int = Field(description="computed trigger level (ROP)")
    reorder_point_exact: float | None
    order_qty: int
    order_up_to: float | None
    kanban_cards: int
    manual_override: bool
    applied_reorder_point: int = Field(description="what the reorder rule uses now")
    applied_order_qty: int
    capacity: int | None = Field(
        description="the bin's capacity in pieces (null: not set)"
    )
    fits_capacity: bool = Field(
        description="false: the applied reorder point plus one order quantity is more "
        "than the bin holds: the service target asks for more stock than fits, and the "
        "reorder rule orders no more order quantities at once than fit, but always at "
        "least one (resize the bin, or set a manual min/max); true when no capacity "
        "is set"
    )
    on_hand: int
    days_of_supply: float | None
    changed_ms: int | None
    why_changed: str | None
    inputs: dict[str, Any]
    recent_changes: list[PolicyChange]


class PolicySettings(BaseModel):
    """A bin's replenishment settings; fields sent are changed, null clears (back to learned)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    policy: PolicyKind | None = None
    service_level: FiniteFloat | None = Field(default=None, gt=0.5, lt=1)
    manual_min: int | None = Field(default=None, ge=0, le=MAX_QTY)
    manual_max: int | None = Field(default=None, ge=1, le=MAX_QTY)
    review_period_days: FiniteFloat | None = Field(default=None, gt=0, le=365)
    prior_daily_demand: FiniteFloat | None = Field(
        default=None, ge=0, le=MAX_DAILY_DEMAND
    )
    lead_time_s: int | None = Field(default=None, gt=0, le=MAX_LEAD_TIME_S)
    pack_size: int | None = Field(default=None, ge=1, le=MAX_QTY)
    moq: int | None = Field(default=None, ge=0, le=MAX_QTY)

    @field_validator("*", mode="before")
    @classmethod
    def _integral_float(cls, value: Any, info: ValidationInfo) -> Any:
        """``10.0`` for an integer field is 10 (as in every request body)."""
        return integral_float(cls, info.field_name, value)

    def changes(self) -> dict[str, Any]:
        """Only the fields the client sent."""
        return {k: getattr(self, k) for k in self.model_fields_set}
