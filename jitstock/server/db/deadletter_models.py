"""State DB table of ingest's dead letters: MQTT messages that could not be applied.

Same conventions as :mod:`jitstock.server.db.models`.  A dead letter keeps the
message exactly as it arrived (topic and payload bytes), why it failed, and when;
an admin can replay it through the API once the cause is fixed (a bin's unit
weight corrected, say).  Replaying marks the row; a replay that fails again
becomes a new dead letter.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from jitstock.server.db.models import AutoId, Base

# Longest topic kept (MQTT allows 65,535 bytes; jitstock topics are far shorter).
MAX_TOPIC_LEN = 512
# Longest error text kept: a SQL error with its parameters can be very long.
MAX_ERROR_LEN = 2000


class DeadLetter(Base):
    """One MQTT message ingest acknowledged without applying it, so the rest could go on."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    topic: Mapped[str] = mapped_column(String(MAX_TOPIC_LEN))
    # the agent of the topic, when the topic names one
    agent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    # short label, as in jitstock_dead_letters_total{reason}
    reason: Mapped[str] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(Text)
    replayed_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    replayed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
