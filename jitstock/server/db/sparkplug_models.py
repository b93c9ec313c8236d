"""State DB table of Sparkplug B metric mappings (issue 17): which gateway metric feeds which bin.

Same conventions as :mod:`jitstock.server.db.models`.  A mapping names a metric the
way the gateway's BIRTH announces it (group, edge node, device — empty for a metric
of the edge node itself — and metric name); aliases are learned from each BIRTH, so
the mapping survives a gateway that renumbers them.  Deleting a bin deletes its mappings.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from jitstock.server.db.models import AutoId, Base

# Sparkplug ids are MQTT topic levels; 64 characters is more than any gateway uses.
MAX_SPARKPLUG_ID_LEN = 64
# Metric names are paths ("Line 1/Scale 3/Net Weight"): Ignition tag paths stay well below.
MAX_METRIC_NAME_LEN = 200
SPARKPLUG_UNITS = ("grams", "count")


class SparkplugMapping(Base):
    """One Sparkplug B metric feeding one bin, in grams (gross) or as a part count."""

    __tablename__ = "sparkplug_mappings"
    __table_args__ = (UniqueConstraint("group_id", "edge_node", "device", "metric"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(String(MAX_SPARKPLUG_ID_LEN))
    edge_node: Mapped[str] = mapped_column(String(MAX_SPARKPLUG_ID_LEN))
    # '' for a metric of the edge node itself (NBIRTH/NDATA)
    device: Mapped[str] = mapped_column(String(MAX_SPARKPLUG_ID_LEN))
    metric: Mapped[str] = mapped_column(String(MAX_METRIC_NAME_LEN))
    bin_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("bins.id", ondelete="CASCADE"), index=True
    )
    # 'grams': gross weight, the bin's tare and unit weight make the count; 'count': parts
    unit: Mapped[str] = mapped_column(String(8))
    # the metric's value times this is grams or parts (1000 for a tag in kilograms)
    factor: Mapped[float] = mapped_column(Float)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(String(100))
