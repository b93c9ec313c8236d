"""Agents as records: whether one is online, and which bins its scanners may receive into.

An agent's *state* is derived from two facts the server records: what its
retained status last said (``reported_state``, at ``status_ms``; docs/protocol.md
makes status optional) and when its last traffic of any kind arrived
(``last_seen_ms``).  A PLC that only publishes readings is therefore judged by
its readings, and a device never heard from is ``unknown``, not offline.  An agent
a manager disabled (``enabled`` false: its broker client is switched off) is
``disabled`` whatever its status and traffic say: not online, and not alerted as
offline, since nobody needs to check its power or network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from jitstock.server.db.models import Agent, Bin

AgentState = Literal["online", "offline", "unknown", "disabled"]
# An agent that published nothing (not even a keep-alive) this long is offline; keep-alives are 30 s.
AGENT_SILENT_S = 120.0
# receive_bins value meaning "any bin of the agent's site" (a dock serving the whole plant)
ANY_BIN = "*"


@dataclass(slots=True, frozen=True)
class Liveness:
    """What the server knows about an agent's life: its last status and its last traffic."""

    # 'online' / 'offline' from the retained status; None: it never sent one
    reported_state: str | None
    # when that status arrived (server time)
    status_ms: int | None
    # last traffic of any kind: readings, scans, an online status
    last_seen_ms: int | None
    # False while a manager has disabled it (PATCH {"enabled": false}): the broker kicked it
    enabled: bool = True

    def said_offline(self) -> bool:
        """Its status says offline (last will or clean shutdown) and no traffic came since."""
        return self.reported_state == "offline" and (
            self.last_seen_ms is None
            or self.status_ms is None
            or self.last_seen_ms <= self.status_ms
        )

    def state(self, now_ms: int, silent_ms: int) -> AgentState:
        """'disabled' (by a manager), 'offline' (said so, or silent too long), 'online', or
        'unknown' (never heard)."""
        if not self.enabled:
            return "disabled"
        if self.said_offline():
            return "offline"
        if self.last_seen_ms is None:
            return "unknown"
        if now_ms - self.last_seen_ms > silent_ms:
            return "offline"
        return "online"

    def online(self, now_ms: int, silent_ms: int) -> bool | None:
        """For a tile or a level: True, False (offline, also by silence, or disabled), None
        (never heard)."""
        state = self.state(now_ms, silent_ms)
        return None if state == "unknown" else state == "online"

    def offline_reason(self, now_ms: int) -> str:
        """Why an agent whose state is 'offline' is: its status, or its silence."""
        if self.said_offline():
            return "reports offline (last will or shutdown)"
        silent_s = (now_ms - (self.last_seen_ms or 0)) // 1000
        return f"silent for {silent_s} s (no readings, scans or status)"


def liveness(agent: Agent) -> Liveness:
    """The liveness facts of an agent row."""
    return Liveness(
        agent.reported_state, agent.status_ms, agent.last_seen_ms, agent.enabled
    )


def may_receive(session: Session, agent_id: str, bin_id: str) -> bool:
    """Whether a label scanned at ``agent_id`` may receive goods into ``bin_id``.

    ``receive_bins`` None: only the bins the agent feeds; ``["*"]``: any bin of
    its site; a list: those bins (of its site).
    """
    agent = session.get(Agent, agent_id)
    target = session.get(Bin, bin_id)
    if agent is None or target is None:
        return False
    allowed = agent.receive_bins
    if allowed is None:
        return target.agent_id == agent_id
    if target.site_id != agent.site_id:
        return False
    return ANY_BIN in allowed or bin_id in allowed
