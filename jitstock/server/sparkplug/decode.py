"""Decoding BIRTH and DATA messages metric by metric, so one bad value does not lose
the message.

pysparkplug decodes a payload whole: one metric whose value does not fit the datatype
its BIRTH declared (an INT32 tag sent 2**40) raises, and the message's good metrics
and its seq were lost with it (the next message then looked like a seq gap; a BIRTH
lost so left the whole node refused until its next rebirth).  Here such a metric is
set aside with why, and the rest of the message decodes as usual.
"""

from __future__ import annotations

from typing import TypeVar

import pysparkplug as spb
from pysparkplug._protobuf import Payload as _PbPayload

_Birth = TypeVar("_Birth", spb.NBirth, spb.DBirth)


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
    pb = _parsed(payload, "data")
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
            bad.append((str(metric.name), _why(exc)))
    return cls(timestamp=pb.timestamp, seq=pb.seq, metrics=tuple(good)), bad


def decode_birth(
    cls: type[_Birth], payload: bytes
) -> tuple[_Birth, list[tuple[str, str]]]:
    """The BIRTH with every metric declared, and (name, why) of each whose value did not
    decode.

    A metric whose value does not fit its declared datatype keeps its declaration
    (name, alias, datatype: later DATA by that alias is still understood) with a null
    value; the caller leaves it out of the readings.  Raises what pysparkplug raises for
    the message as a whole: protobuf's ``DecodeError``, ``ValueError`` for a missing
    timestamp or seq, or a metric without a name or datatype (a BIRTH must declare both).
    """
    try:
        return cls.decode(payload), []
    except (OverflowError, ValueError, TypeError):
        pass  # maybe one value: decoded one by one below
    pb = _parsed(payload, "BIRTH")
    metrics: list[spb.Metric] = []
    bad: list[tuple[str, str]] = []
    for metric in pb.metrics:
        try:
            metrics.append(spb.Metric.from_pb(metric))
        except (OverflowError, ValueError, TypeError) as exc:
            if not metric.name or metric.datatype == spb.DataType.UNKNOWN:
                # not a declaration either: the BIRTH is malformed
                raise ValueError(
                    f"BIRTH metric {metric.name or f'(alias {metric.alias})'!r} "
                    f"declares no name or no datatype, and its value does not "
                    f"decode ({_why(exc)})"
                ) from exc
            bad.append((metric.name, _why(exc)))
            metric.ClearField(metric.WhichOneof("value") or "is_null")
            metric.is_null = True
            metrics.append(spb.Metric.from_pb(metric))
    # Birth's own checks (a name and a datatype on every metric) raise ValueError
    return cls(timestamp=pb.timestamp, seq=pb.seq, metrics=tuple(metrics)), bad


def _parsed(payload: bytes, what: str) -> _PbPayload:
    """The protobuf message, which must carry a timestamp and a seq."""
    pb = _PbPayload.FromString(payload)
    if not pb.HasField("timestamp") or not pb.HasField("seq"):
        raise ValueError(f"Sparkplug {what} payload missing its timestamp or seq")
    return pb


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"
