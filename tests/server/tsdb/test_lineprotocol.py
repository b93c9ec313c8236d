"""Line protocol escaping, checked as text and by round trips through the real InfluxDB 1.6."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitstock.server.tsdb import InvalidPoint, Point
from jitstock.server.tsdb.influx import InfluxStore
from jitstock.server.tsdb.lineprotocol import (
    LineEncoder,
    escape_key,
    escape_measurement,
    escape_string,
)
from tests.server.tsdb.conftest import make_influx_store
from tests.services import InfluxDB


def test_escaping_rules() -> None:
    assert escape_measurement("a b,c=d") == "a\\ b\\,c=d"
    assert escape_key("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_string('say "hi" \\o/') == 'say \\"hi\\" \\\\o/'


def test_encoder_output() -> None:
    enc = LineEncoder()
    p = Point(
        "bin level",
        (("site", "a b"), ("bin", "x=1,2")),
        (("g", 1.5), ("n", 3), ("ok", True), ("s", 'q"\\')),
        7,
    )
    expected = (
        b'bin\\ level,bin=x\\=1\\,2,site=a\\ b g=1.5,n=3i,ok=true,s="q\\"\\\\" 7\n'
    )
    assert enc.encode([p]) == (expected, 1)
    assert enc.encode([p, p]) == (
        expected * 2,
        2,
    )  # the cached (fast) path writes the same bytes


def test_encoder_rejects_or_raises() -> None:
    enc = LineEncoder()
    good = Point("m", (), (("v", 1.0),), 1)
    bad = Point("m", (), (("v", float("nan")),), 2)
    rejected: list[tuple[Point, str]] = []
    assert enc.encode([good, bad, good], rejected) == (b"m v=1.0 1\nm v=1.0 1\n", 2)
    assert [p for p, _ in rejected] == [bad]
    with pytest.raises(InvalidPoint, match="nan"):
        enc.encode([bad])


# What line protocol can carry in a tag value: anything but control characters, not ending in a backslash.
SPECIAL = " ,=\"'\\%#"
tag_values = st.text(
    alphabet=st.one_of(
        st.sampled_from(SPECIAL),
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: not s.endswith("\\"))
string_values = st.text(
    alphabet=st.one_of(
        st.sampled_from(SPECIAL + "\n"),
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
    ),
    max_size=30,
)
_measurements = itertools.count()


@pytest.fixture(scope="module")
def prop_store(
    influxdb: InfluxDB, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InfluxStore]:
    store = make_influx_store(influxdb, Path(tmp_path_factory.mktemp("prop")))
    yield store
    store.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    triples=st.lists(
        st.tuples(tag_values, tag_values, string_values),
        min_size=1,
        max_size=8,
        unique_by=lambda t: t[0],
    )
)
def test_tags_and_strings_round_trip_through_influxdb(
    prop_store: InfluxStore, influxdb: InfluxDB, triples: list[tuple[str, str, str]]
) -> None:
    measurement = f"prop_{next(_measurements)}"
    prop_store.write(
        [
            Point(
                measurement,
                (("tv", tv), ("fixed", "x"), ("tw", tw)),
                (("s", sv), ("i", i)),
                1000 + i,
            )
            for i, (tv, tw, sv) in enumerate(triples)
        ]
    )
    assert prop_store.stats()["points_rejected"] == 0
    # independent of our query builder: what InfluxDB itself holds, series by series
    result = influxdb.query(
        f'SELECT "s", "i" FROM "{measurement}" GROUP BY "tv", "tw"', db=prop_store.db
    )
    held = {
        (s["tags"]["tv"], s["tags"]["tw"]): (s["values"][0][1], s["values"][0][2])
        for s in result["series"]
    }
    assert held == {(tv, tw): (sv, i) for i, (tv, tw, sv) in enumerate(triples)}
    # and through the store's escaped tag filters
    for i, (tv, tw, sv) in enumerate(triples):
        rows = prop_store.query_raw(measurement, {"tv": tv, "tw": tw}, 0, 10_000)
        assert rows == [{"ts_ms": 1000 + i, "s": sv, "i": i}]


def test_frame_fast_path_matches_point_encoding() -> None:
    """After the first (validating) pass, a frame encodes in one pass to the same bytes."""
    from jitstock.server.tsdb import Frame
    from jitstock.server.tsdb.lineprotocol import LineEncoder

    enc = LineEncoder()
    tags = [(("bin", f"B {i}"), ("site", "s,1")) for i in range(4)]
    frame = Frame(
        "bin_level",
        tags,
        ("grams", "count", "confidence", "stable"),
        [
            [1.5, 2.0, 3.25, 4.0],
            [1, 2, 3, 4],
            [0.5, 1.0, 0.25, 0.0],
            [True, False, True, True],
        ],
        [1_700_000_000_000 + i for i in range(4)],
    )
    assert (
        enc.encode_frame(frame) is None
    )  # unknown series and fields: caller takes the general path
    expected, n = enc.encode(frame.points())
    fast = enc.encode_frame(frame)
    assert fast == (expected, n)
    assert n == 4
