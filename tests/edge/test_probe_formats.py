"""docs/scales.md's format table and check-port's VARIANTS say the same thing, and every
documented example is identified as what the table says it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jitstock.edge.frames import parse_sics_response, parse_stream_line
from jitstock.edge.probe import (
    EXIT_IDENTIFIED,
    EXIT_UNKNOWN,
    VARIANTS,
    describe_output,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "scales.md"


def table_rows() -> list[list[str]]:
    """The rows of the 'Supported frame formats' table, cells stripped."""
    text = DOC.read_text()
    section = text.split("## Supported frame formats", 1)[1].split("\n## ", 1)[0]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    return rows[2:]  # header and separator


def test_every_variant_is_a_row_of_the_table() -> None:
    titles = [row[0] for row in table_rows()]
    assert titles == [v.title for v in VARIANTS]
    for row, v in zip(table_rows(), VARIANTS, strict=True):
        assert row[2] == (f"`{v.protocol}`" if v.protocol else "–")
        if v.key != "toledo":  # binary: the table shows it symbolically
            assert row[1] == f"`{v.example.decode()}`"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.key}-{v.example!r}")
def test_each_example_is_identified_as_its_variant(variant) -> None:
    if variant.protocol == "sics":
        frame = parse_sics_response(variant.example)
        assert frame.grams == pytest.approx(1234.5)
        return
    ending = b"" if variant.key == "toledo" else b"\r\n"
    checksum = b"\x11" if variant.key == "toledo" else b""
    raw = (variant.example + ending + checksum) * 5
    found = describe_output("/dev/ttyX", raw, 1.0)
    assert found.variant == variant.key
    if variant.protocol is None:
        assert found.exit_code == EXIT_UNKNOWN
        assert "1234.5 g" in found.text
    else:
        assert found.exit_code == EXIT_IDENTIFIED
        grams = parse_stream_line(variant.example).grams
        assert f"last {grams:.1f} g" in found.text


def test_more_documented_stream_examples_parse() -> None:
    text = DOC.read_text()
    para = text.split("More examples the stream parser takes:", 1)[1].split("MT-SICS")[
        0
    ]
    examples = re.findall(r"`([^`]+)`", para)
    assert len(examples) == 4
    for line in examples:
        parse_stream_line(line.encode())
