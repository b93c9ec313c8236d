"""Scale frame parsers: the continuous ASCII stream and the polled MT-SICS-like protocol.

Errors (one class, the reason is a metric/health label)::

    FrameError(reason, message)
        reason "garbage"       bytes that are not a frame of the expected protocol
        reason "scale_error"   the scale reports an error (stream `ER,nn`; SICS `ES`, `ET`, `EL`)
        reason "busy"          SICS `S I`: the scale cannot answer right now
        reason "out_of_range"  overload / underload (stream `OL`; SICS `S +` / `S -`)

Both parsers take one line without its terminator (a trailing CR/LF is tolerated)
and return a :class:`Frame` in grams. ``Frame.net`` says the value is a *net*
weight (the indicator subtracted its tare): stream `NT` frames and every MT-SICS
`S`/`SI` answer (MT-SICS weight responses are net by definition). The reader
decides what to do with one (edge/scale.py: refuse it, or add a configured tare).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SICS_REQUEST = b"S\r\n"

# grams per unit; a scale configured in kg or lb is converted at the edge
UNIT_GRAMS: dict[str, float] = {"g": 1.0, "kg": 1000.0, "lb": 453.59237}

FRAME_REASONS = ("garbage", "scale_error", "busy", "out_of_range")

# `ST,GS,+0001234.5 g`: status (ST stable, US unstable, OL overload), GS gross / NT net, value,
# unit; the A&D standard format has no GS/NT field: `ST,+001234.5  g` (docs/scales.md)
_STREAM_RE = re.compile(
    rb"^(ST|US|OL),(?:(GS|NT),)?([+-]?\s*\d+(?:\.\d+)?)\s*(g|kg|lb)$"
)
_STREAM_ERROR_RE = re.compile(rb"^ER,\s*(\d{1,3})$")
# `S S      1234.5 g` / `S D     -12.0 kg`
_SICS_RE = re.compile(rb"^S ([SD])\s+([+-]?\d+(?:\.\d+)?)\s+(g|kg|lb)$")
_SICS_ERRORS = {
    b"ES": "syntax error",
    b"ET": "transmission error",
    b"EL": "logic error",
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One weight sample from a scale, in grams, with the scale's own stability flag."""

    grams: float
    stable: bool
    net: bool = False


class FrameError(ValueError):
    """A line that is not a usable weight; `reason` is one of FRAME_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _clean(line: bytes) -> bytes:
    return line.rstrip(b"\r\n").strip(b" ")


def _describe(line: bytes) -> str:
    return repr(line[:40]) + ("..." if len(line) > 40 else "")


def _to_grams(value: bytes, unit: bytes) -> float:
    # the pattern lets any ASCII whitespace (a tab too) stand between sign and digits:
    # float() takes none of it inside a number
    return float(b"".join(value.split())) * UNIT_GRAMS[unit.decode("ascii")]


def parse_stream_line(line: bytes) -> Frame:
    """Parse one continuous-stream line such as `ST,GS,+0001234.5 g` into grams."""
    text = _clean(line)
    m = _STREAM_RE.match(text)
    if m is not None:
        status, kind, value, unit = m.groups()
        if status == b"OL":
            raise FrameError("out_of_range", f"scale overload: {_describe(text)}")
        return Frame(_to_grams(value, unit), status == b"ST", kind == b"NT")
    m = _STREAM_ERROR_RE.match(text)
    if m is not None:
        raise FrameError("scale_error", f"scale error code {m.group(1).decode()}")
    # overload lines often carry no number (A&D `OL,+9999999E+19`)
    if text.startswith(b"OL,"):
        raise FrameError("out_of_range", f"scale overload: {_describe(text)}")
    raise FrameError("garbage", f"not a stream frame: {_describe(text)}")


def parse_sics_response(line: bytes) -> Frame:
    """Parse one MT-SICS answer to `S` such as `S S      1234.5 g` into grams."""
    text = _clean(line)
    m = _SICS_RE.match(text)
    if m is not None:
        flag, value, unit = m.groups()
        return Frame(_to_grams(value, unit), flag == b"S", net=True)
    if text == b"S I":
        raise FrameError("busy", "scale busy (S I)")
    if text in (b"S +", b"S -"):
        raise FrameError(
            "out_of_range", f"scale {'overload' if text == b'S +' else 'underload'}"
        )
    if text in _SICS_ERRORS:
        raise FrameError(
            "scale_error", f"scale answered {text.decode()} ({_SICS_ERRORS[text]})"
        )
    raise FrameError("garbage", f"not a SICS weight response: {_describe(text)}")
