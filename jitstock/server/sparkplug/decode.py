"""Decoding NDATA/DDATA metric by metric, so one bad value does not lose the message.

pysparkplug decodes a payload whole: one metric whose value does not fit the datatype
its BIRTH declared (an INT32 tag sent 2**40) raises, and the message's good metrics
and its seq were lost with it (the next message then looked like a seq gap).  Here
such a metric is set aside with why, and the rest of the message decodes as usual.
"""

from __future__ import annotations

import pysparkplug as spb
from pysparkplug._protobuf import Payload as _PbPayload


def decode_data(
    cls: type[spb.NData] | type[spb.DData],
    payload: bytes,
    birth: spb.NBirth | spb.DBirth,
) -> tuple[spb.NData | spb.DData, list[tuple[str, str]]]:
    """The message with every metric that decodes, and (name, why) of each that did not.

    Raises what pysparkplug raises for the message as a whole: ``KeyError`` for an
    alias the BIRTH did not announce, protobuf's ``DecodeError``, ``ValueError`` for a
    missing timestamp.
    """
    try:
        return cls.decode(payload, birth=birth), []
    except (OverflowError, ValueError, TypeError):
        pass  # maybe one metric: decoded one by one below
    pb = _PbPayload.FromString(payload)
    if not pb.HasField("timestamp") or not pb.HasField("seq"):
        raise ValueError("Sparkplug data payload missing its timestamp or seq")
    good: list[spb.Metric] = []
    bad: list[tuple[str, str]] = []
    for metric in pb.metrics:
        if not metric.name:
            metric.name = birth.get_name(metric.alias)
        if metric.datatype == spb.DataType.UNKNOWN:
            metric.datatype = birth.get_dtype(metric.name)
        try:
            good.append(spb.Metric.from_pb(metric))
        except (OverflowError, ValueError, TypeError) as exc:
            bad.append((str(metric.name), f"{type(exc).__name__}: {str(exc)[:200]}"))
    return cls(timestamp=pb.timestamp, seq=pb.seq, metrics=tuple(good)), bad
