"""HTTP models of agents: Create / Update / Public."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from jitstock.server.agents import ANY_BIN
from jitstock.server.api.schemas import BIN_ID_PATTERN, AgentId, Input, Patch, SiteId

# A dock may serve many bins; a list longer than this is better said with "*".
MAX_RECEIVE_BINS = 1000
Description = Annotated[str, Field(min_length=1, max_length=200)]
# a bin id, or "*"
RECEIVE_BIN_PATTERN = "^(" + BIN_ID_PATTERN[1:-1] + r"|\*)$"
ReceiveBin = Annotated[str, Field(pattern=RECEIVE_BIN_PATTERN, examples=["A-01"])]


def _check_receive_bins(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if ANY_BIN in value and len(value) > 1:
        raise ValueError(f"{ANY_BIN!r} (any bin of the site) must be the only entry")
    if len(set(value)) != len(value):
        raise ValueError("lists a bin twice")
    return value


ReceiveBins = Annotated[
    list[ReceiveBin] | None,
    Field(
        max_length=MAX_RECEIVE_BINS,
        description=(
            "bins this agent's scanners may receive goods into: null = the bins it "
            'feeds, ["*"] = any bin of its site, or a list of bin ids of its site'
        ),
    ),
    AfterValidator(_check_receive_bins),
]


class AgentCreate(Input):
    """A new agent: a Pi or PLC feeding bins, or a dock scanner station without bins."""

    id: AgentId
    site_id: SiteId
    description: Description | None = None
    receive_bins: ReceiveBins = None


class AgentUpdate(Patch):
    """Change what an agent is for (its site and liveness are not edited here)."""

    REQUIRED = frozenset({"enabled"})

    description: Description | None = None
    receive_bins: ReceiveBins = None
    enabled: bool | None = Field(
        default=None,
        description=(
            "false disables the agent's provisioned MQTT client at the broker (a "
            "connected agent is disconnected and cannot reconnect); true enables it"
        ),
    )


class AgentPublic(BaseModel):
    """An agent: its record, its liveness and how many bins it feeds."""

    id: str
    site_id: str
    description: str | None
    receive_bins: list[str] | None
    state: Literal["online", "offline", "unknown", "disabled"] = Field(
        description=(
            "offline: its status says so (last will) with no traffic since, or silent "
            "past the threshold; online: recent traffic; unknown: never heard from; "
            "disabled: a manager disabled it (enabled false), not alerted as offline"
        )
    )
    online: bool = Field(
        description="compatibility: last status online, or traffic since (ignores silence)"
    )
    reported_state: str | None = Field(
        description="what its retained status said; null: it never sent one"
    )
    last_seen_ms: int | None = Field(
        description="last readings, scans or online status"
    )
    status_ms: int | None = Field(description="when its last status arrived")
    version: str | None
    sensors: list[dict[str, Any]] | None
    bins: int = Field(description="bins it feeds")
    enabled: bool = Field(
        description="false: its MQTT client is disabled at the broker"
    )
    mqtt_username: str | None = Field(
        description=(
            "its MQTT client, provisioned by the server (Mosquitto Dynamic Security); "
            "null: its credentials are made by hand (password file)"
        )
    )


class AgentCredentials(BaseModel):
    """An agent's MQTT credentials, shown once: the server keeps no copy of the password."""

    username: str
    password: str = Field(description="shown only in this answer; store it now")
    edge_toml: str = Field(
        description="a ready /etc/jitstock/edge.toml for jitstock-edge; add [[scales]]"
    )


class AgentCreated(AgentPublic):
    """A new agent, with its MQTT credentials when the server provisions them."""

    credentials: AgentCredentials | None = Field(
        description=(
            "null unless the server manages the broker's Dynamic Security "
            "(JITSTOCK_MQTT_DYNSEC_USER); never shown again"
        )
    )
