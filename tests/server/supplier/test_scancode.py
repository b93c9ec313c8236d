"""Reading dock scan codes (GS1 element strings, GTINs, symbology identifiers): never a
crash, whatever the contract lets through."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jitstock import protocol as p
from jitstock.server.supplier.scancode import gtin_forms, read_code

GS = p.GS


@pytest.mark.parametrize(
    ("code", "gtin", "count", "lot"),
    [
        ("4006381333931", "04006381333931", 1, None),  # EAN-13, not AI 400
        ("036000291452", "00036000291452", 1, None),  # UPC-A
        ("]E04006381333931", "04006381333931", 1, None),
        ("]C10104006381333931", "04006381333931", 1, None),
        (f"]C10104006381333931{GS}10LOT42{GS}3012", "04006381333931", 12, "LOT42"),
        (f"]d2010400638133393110LOT42{GS}3012", "04006381333931", 12, "LOT42"),
        (f"]Q3010400638133393110L{GS}307", "04006381333931", 7, "L"),
        (f"{GS}010400638133393110L{GS}30007{GS}", "04006381333931", 7, "L"),
        ("(01)04006381333931(10)LOT42(30)12", "04006381333931", 12, "LOT42"),
        ("]C1020400638133393137123", "04006381333931", 123, None),
        ("]C1003761042500212345690204006381333931377", "04006381333931", 7, None),
    ],
)
def test_gs1_and_gtin_codes(code: str, gtin: str, count: int, lot: str | None) -> None:
    r = read_code(code)
    assert (r.gtin, r.count, r.lot, r.problem) == (gtin, count, lot, None)


@pytest.mark.parametrize(
    "code",
    [
        "]C1",
        f"]C1{GS}",
        "]C10104006381333932",  # check digit
        "]C1010400638133393130" + str(2**63),
        f"{GS}]C10104006381333931",
        "]C1" + "9" * 200,  # AI 99 alone: no GTIN
        "(01)123",
    ],
)
def test_unreadable_gs1_is_a_plain_code(code: str) -> None:
    r = read_code(code)
    assert r.gtin is None
    assert r.count == 1
    assert r.problem
    assert code in r.barcodes()


@pytest.mark.parametrize(
    "code",
    ["]C10104006381333931300", "]C10104006381333931300000000", "]C1010400638133393130"],
)
def test_a_count_of_nothing_is_refused(code: str) -> None:
    r = read_code(code)
    assert r.count == 0
    assert r.problem


def test_labels_and_plain_codes() -> None:
    assert read_code("]Q1JSORD:ord_1").code == "JSORD:ord_1"
    assert read_code("JSORD:ord_1").code == "JSORD:ord_1"
    r = read_code("KANBAN-07")
    assert (r.code, r.gtin, r.count, r.problem) == ("KANBAN-07", None, 1, None)
    assert gtin_forms("00036000291452") == [
        "00036000291452",
        "0036000291452",
        "036000291452",
    ]
    assert gtin_forms("14006381333938") == ["14006381333938"]


CODE = st.text(
    st.characters(exclude_categories=["Cs"]) | st.sampled_from([GS, "]", "(", ")"]),
    min_size=1,
    max_size=p.MAX_CODE_LEN,
).filter(p.valid_code)


@given(st.sampled_from(["", "]C1", "]d2", "]E0", "]Q1", GS]), CODE)
def test_any_valid_code_is_read_without_a_crash(prefix: str, code: str) -> None:
    r = read_code((prefix + code)[: p.MAX_CODE_LEN])
    assert r.count >= 0
    assert r.raw in r.barcodes()
