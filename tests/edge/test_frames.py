"""Frame parsers against hand-written frames of both protocols, in g, kg and lb."""

from __future__ import annotations

import pytest

from jitstock.edge.frames import (
    Frame,
    FrameError,
    parse_sics_response,
    parse_stream_line,
)


@pytest.mark.parametrize(
    ("line", "grams", "stable"),
    [
        (b"ST,GS,+0001234.5 g\r\n", 1234.5, True),
        (b"US,GS,+0001230.1 g", 1230.1, False),
        (b"ST,NT,-0000012.0 g\r\n", -12.0, True),
        (b"ST,GS,+0001.2345 kg\r\n", 1234.5, True),
        (b"US,GS,+0002.0000 lb\n", 907.18474, False),
        (b"ST,GS,+   812.0 g", 812.0, True),
        (b"ST,GS,+\t812.0 g", 812.0, True),  # any ASCII whitespace, not a ValueError
        (b"US,+\x0b\x0c0001.750 kg", 1750.0, False),
    ],
)
def test_stream_frames_in_grams(line: bytes, grams: float, stable: bool) -> None:
    frame = parse_stream_line(line)
    assert frame.grams == pytest.approx(grams)
    assert frame.stable is stable


@pytest.mark.parametrize(
    ("line", "grams", "stable"),
    [
        (b"S S      1234.5 g\r\n", 1234.5, True),
        (b"S D      1230.1 g", 1230.1, False),
        (b"S S     -3.2 g", -3.2, True),
        (b"S S      1.2345 kg", 1234.5, True),
        (b"S D      0.5000 lb\r\n", 226.796185, False),
    ],
)
def test_sics_weight_responses_in_grams(
    line: bytes, grams: float, stable: bool
) -> None:
    frame = parse_sics_response(line)
    # MT-SICS weight answers are net by definition
    assert frame == Frame(pytest.approx(grams), stable, net=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"ER,01", "scale_error"),
        (b"OL,GS,+9999999.9 g", "out_of_range"),
        (b"ST,GS,+0001234.5 oz", "garbage"),
        (b"ST,GS,", "garbage"),
        (b"\xd7l\xbf\x00ST,GS,+0001234.5 g", "garbage"),
        (b"S S      1234.5 g", "garbage"),  # a SICS answer on a stream port
        (b"", "garbage"),
    ],
)
def test_stream_error_forms(line: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_stream_line(line)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"S I\r\n", "busy"),
        (b"ES\r\n", "scale_error"),
        (b"ET", "scale_error"),
        (b"EL", "scale_error"),
        (b"S +", "out_of_range"),
        (b"S -", "out_of_range"),
        (b"S X      12.0 g", "garbage"),
        (b"ST,GS,+0001234.5 g", "garbage"),
        (b"\xff\xfe", "garbage"),
    ],
)
def test_sics_error_forms(line: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_sics_response(line)
    assert info.value.reason == reason
