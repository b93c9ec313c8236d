"""HTTP models of the Sparkplug B metric mappings (GET/PUT/DELETE /api/v1/sparkplug/mappings)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    field_validator,
)

from jitstock.server.api.nul_guard import refuse_nul
from jitstock.server.api.schemas import BinId
from jitstock.server.db.sparkplug_models import (
    MAX_METRIC_NAME_LEN,
    MAX_SPARKPLUG_ID_LEN,
)

# A Sparkplug id is one MQTT topic level: no separator, no wildcard, no control character.
ID_PATTERN = r"^[^/+#\x00-\x1f\x7f]*$"
METRIC_PATTERN = r"^[^\x00-\x1f\x7f]*$"
# A tag in tonnes or milligrams is still a factor of 1e6 from grams; beyond it is a typo.
MIN_FACTOR = 1e-6
MAX_FACTOR = 1e6


def _utf8(value: str) -> str:
    """Refuse lone surrogates: no gateway can send them, and no database can store them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


SparkplugId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_SPARKPLUG_ID_LEN,
        pattern=ID_PATTERN,
        examples=["Plant1"],
    ),
    AfterValidator(_utf8),
]
DeviceId = Annotated[
    str,
    Field(
        max_length=MAX_SPARKPLUG_ID_LEN,
        pattern=ID_PATTERN,
        description="the device id of DBIRTH/DDATA topics; '' for a metric of the edge node itself",
        examples=["Scale3"],
    ),
    AfterValidator(_utf8),
]
MetricName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_METRIC_NAME_LEN,
        pattern=METRIC_PATTERN,
        description="the metric name as the BIRTH announces it (aliases are learned from the BIRTH)",
        examples=["Gross Weight"],
    ),
    AfterValidator(_utf8),
]
Unit = Literal["grams", "count"]
Factor = Annotated[
    FiniteFloat,
    Field(
        ge=MIN_FACTOR,
        le=MAX_FACTOR,
        description="the metric's value times this is grams (gross) or parts: 1000 for kilograms",
    ),
]


class SparkplugMappingPut(BaseModel):
    """Which bin a Sparkplug metric feeds; replaces the metric's mapping if it has one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return refuse_nul(value)

    group_id: SparkplugId
    edge_node: SparkplugId
    device: DeviceId = ""
    metric: MetricName
    bin_id: BinId
    unit: Unit = Field(
        description="`grams`: a gross weight, counted through the bin's tare and unit "
        "weight like a scale's reading; `count`: parts directly"
    )
    factor: Factor = 1.0


class SparkplugMappingPublic(BaseModel):
    """A stored mapping."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: int
    group_id: str
    edge_node: str
    device: str
    metric: str
    bin_id: str
    unit: Unit
    factor: float
    updated_ms: int
    updated_by: str


class SparkplugNodePublic(BaseModel):
    """One mapped edge node as the server follows it."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    group_id: str
    edge_node: str
    online: bool | None = Field(
        description="true after its NBIRTH, false after its NDEATH; null: neither seen "
        "since the server started"
    )
    in_step: bool = Field(
        description="its seq and aliases are trusted; false: its data waits for the "
        "rebirth the server requested"
    )
    devices_online: list[str] = Field(description="devices whose DBIRTH was seen")
    devices_offline: list[str] = Field(description="devices that sent DDEATH")


class SparkplugStatus(BaseModel):
    """Whether Sparkplug ingest is on, and the mapped edge nodes it follows."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(description="JITSTOCK_SPARKPLUG_GROUPS is set")
    groups: list[str]
    connected: bool = Field(description="the Sparkplug MQTT session is up")
    nodes: list[SparkplugNodePublic]
