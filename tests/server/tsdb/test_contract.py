"""The TimeSeriesStore contract, run against SQLite and a real InfluxDB 1.6."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from jitstock.server.tsdb import AGGS, Point, TimeSeriesStore

T0 = 1_700_000_000_000  # a realistic epoch ms, far from bucket-alignment accidents at 0
EVERYTHING = (0, 2**62 // 1_000_000)


def lvl(bin_id: str, ts: int, grams: float, site: str = "s1", **extra: object) -> Point:
    """A bin level point like ingest writes."""
    fields = (("grams", grams), *extra.items())
    return Point("bin_level", (("bin", bin_id), ("site", site)), fields, ts)  # type: ignore[arg-type]


def test_raw_round_trip_keeps_types_and_sorts_by_time(store: TimeSeriesStore) -> None:
    points = [
        Point(
            "bin_level",
            (("bin", "B1"),),
            (("grams", 1.0), ("count", 3), ("stable", True), ("note", "ok")),
            T0 + 20,
        ),
        Point(
            "bin_level",
            (("bin", "B1"),),
            (("grams", 0.1 + 0.2), ("count", -7), ("stable", False), ("note", "")),
            T0,
        ),
        Point(
            "bin_level",
            (("bin", "B1"),),
            (("grams", 1e300), ("count", 2**62), ("stable", True), ("note", "x")),
            T0 + 10,
        ),
    ]
    store.write(points)
    rows = store.query_raw("bin_level", {"bin": "B1"}, *EVERYTHING)
    assert rows == [
        {"ts_ms": T0, "grams": 0.1 + 0.2, "count": -7, "stable": False, "note": ""},
        {"ts_ms": T0 + 10, "grams": 1e300, "count": 2**62, "stable": True, "note": "x"},
        {"ts_ms": T0 + 20, "grams": 1.0, "count": 3, "stable": True, "note": "ok"},
    ]
    assert (
        type(rows[2]["grams"]) is float
    )  # 1.0 comes back a float, not the JSON integer 1
    assert store.stats()["points_written"] == 3


def test_raw_range_is_half_open_and_limit_and_fields_apply(
    store: TimeSeriesStore,
) -> None:
    store.write([lvl("B1", T0 + i, float(i), count=i) for i in range(10)])
    rows = store.query_raw("bin_level", {"bin": "B1"}, T0 + 2, T0 + 5)
    assert [r["ts_ms"] for r in rows] == [T0 + 2, T0 + 3, T0 + 4]
    rows = store.query_raw("bin_level", {}, T0, T0 + 10, fields=["count"], limit=4)
    assert rows == [{"ts_ms": T0 + i, "count": i} for i in range(4)]
    assert store.query_raw("bin_level", {}, T0 + 10, T0 + 20) == []
    assert store.query_raw("no_such_measurement", {}, *EVERYTHING) == []


def test_tag_filters_select_series(store: TimeSeriesStore) -> None:
    store.write(
        [
            lvl("B1", T0, 1.0, site="s1"),
            lvl("B2", T0 + 1, 2.0, site="s1"),
            lvl("B1", T0 + 2, 3.0, site="s2"),
        ]
    )

    def grams(tags: dict[str, str]) -> list[float]:
        return [r["grams"] for r in store.query_raw("bin_level", tags, *EVERYTHING)]

    assert grams({}) == [1.0, 2.0, 3.0]
    assert grams({"site": "s1"}) == [1.0, 2.0]
    assert grams({"bin": "B1"}) == [1.0, 3.0]
    assert grams({"bin": "B1", "site": "s2"}) == [3.0]
    assert grams({"bin": "B3"}) == []
    assert grams({"shelf": "top"}) == []


@pytest.mark.parametrize("agg", AGGS)
def test_downsampling_per_bucket(store: TimeSeriesStore, agg: str) -> None:
    # buckets of 10 ms from T0: [1, 5, 3] | nothing | [10] ; another bin's points must not leak in
    values = {T0 + 1: 1.0, T0 + 4: 5.0, T0 + 7: 3.0, T0 + 25: 10.0}
    store.write([lvl("B1", ts, g) for ts, g in values.items()])
    store.write([lvl("B2", T0 + 2, 100.0)])
    got = store.query_downsampled(
        "bin_level", {"bin": "B1"}, "grams", T0, T0 + 30, 10, agg
    )  # type: ignore[arg-type]
    expected = {
        "mean": [3.0, None, 10.0],
        "min": [1.0, None, 10.0],
        "max": [5.0, None, 10.0],
        "last": [3.0, None, 10.0],
        "count": [3, 0, 1],
    }[agg]
    assert got == list(zip([T0, T0 + 10, T0 + 20], expected, strict=True))


def test_downsampling_buckets_are_epoch_aligned(store: TimeSeriesStore) -> None:
    store.write(
        [lvl("B1", T0 + 5, 2.0), lvl("B1", T0 + 15, 4.0), lvl("B1", T0 + 3, 100.0)]
    )
    # the range starts mid-bucket: the first bucket is labelled at its aligned start, data before start excluded
    got = store.query_downsampled("bin_level", {}, "grams", T0 + 4, T0 + 16, 10, "mean")
    assert got == [(T0, 2.0), (T0 + 10, 4.0)]
    assert store.query_downsampled(
        "bin_level", {}, "grams", T0 + 40, T0 + 60, 10, "count"
    ) == [(T0 + 40, 0), (T0 + 50, 0)]


def test_same_series_and_timestamp_merge_last_write_wins(
    store: TimeSeriesStore,
) -> None:
    store.write([lvl("B1", T0, 1.0, count=1)])
    store.write([lvl("B1", T0, 2.0)])  # grams replaced, count kept (merge is per field)
    # tag order does not make a different series
    store.write(
        [Point("bin_level", (("site", "s1"), ("bin", "B1")), (("stable", True),), T0)]
    )
    store.write([lvl("B1", T0, 5.0), lvl("B1", T0, 6.0)])  # within one batch, too
    assert store.query_raw("bin_level", {}, *EVERYTHING) == [
        {"ts_ms": T0, "grams": 6.0, "count": 1, "stable": True}
    ]


NASTY = [
    "two words",
    "a,b",
    "k=v",
    'say "hi"',
    "it's",
    "ünïcödé ✓ 日本",
    "back\\slash",
    "\\,\\=\\ \\\\x",
    "=,\" ' \\ end",
    " leading and trailing ",
    "%s %d 100%",
]


@pytest.mark.parametrize("text", NASTY)
def test_nasty_tag_values_and_strings_round_trip(
    store: TimeSeriesStore, text: str
) -> None:
    store.write(
        [
            Point(
                "scan",
                (("code", text), ("scanner", "S1")),
                (("raw", text), ("n", 1)),
                T0,
            ),
            Point(
                "scan",
                (("code", text + "x"), ("scanner", "S1")),
                (("raw", "other"), ("n", 2)),
                T0,
            ),
        ]
    )
    rows = store.query_raw("scan", {"code": text}, *EVERYTHING)
    assert rows == [{"ts_ms": T0, "raw": text, "n": 1}]
    assert store.query_downsampled(
        "scan", {"code": text}, "n", T0, T0 + 1, 1, "count"
    ) == [(T0, 1)]


def test_bad_points_are_counted_and_the_rest_stored(store: TimeSeriesStore) -> None:
    bad = [
        lvl("B1", T0 + 1, math.nan),
        lvl("B1", T0 + 2, math.inf),
        Point("bin_level", (("bin", "B1"),), (), T0 + 3),
        Point("bin\nlevel", (("bin", "B1"),), (("grams", 1.0),), T0 + 4),
        Point("bin_level", (("bin", "ends\\"),), (("grams", 1.0),), T0 + 5),
        Point("bin_level", (("bin", "B1"),), (("time", 1.0),), T0 + 6),
        Point("bin_level", (("bin", "B1"),), (("grams", [1]),), T0 + 7),  # type: ignore[arg-type]
        Point("bin_level", (("bin", "B1"),), (("grams", 1.0),), 1.5),  # type: ignore[arg-type]
        Point("bin_level", (("bin", "B1"),), (("big", 2**63),), T0 + 8),
    ]
    good = [lvl("B1", T0, 1.0), lvl("B1", T0 + 9, 2.0)]
    store.write([good[0], *bad, good[1]])
    assert [r["ts_ms"] for r in store.query_raw("bin_level", {}, *EVERYTHING)] == [
        T0,
        T0 + 9,
    ]
    stats = store.stats()
    assert stats["points_rejected"] == len(bad)
    assert stats["points_written"] == 2


def test_field_type_conflict_rejects_the_point_not_the_batch(
    store: TimeSeriesStore,
) -> None:
    store.write([lvl("B1", T0, 1.0)])
    store.write(
        [
            lvl("B1", T0 + 1, 2.0),
            Point("bin_level", (("bin", "B2"),), (("grams", "heavy"),), T0 + 2),
        ]
    )
    assert [r["grams"] for r in store.query_raw("bin_level", {}, *EVERYTHING)] == [
        1.0,
        2.0,
    ]
    assert store.stats()["points_rejected"] == 1


def test_numpy_scalars_and_empty_tags(store: TimeSeriesStore) -> None:
    store.write(
        [
            Point(
                "bin_level",
                (
                    ("bin", "B1"),
                    ("shelf", ""),
                ),  # an empty tag value is no tag (InfluxDB drops it)
                (
                    ("grams", np.float64(2.5)),
                    ("count", np.int64(4)),
                    ("stable", np.bool_(True)),
                ),
                np.int64(T0),  # type: ignore[arg-type]
            )
        ]
    )
    assert store.query_raw("bin_level", {"shelf": ""}, *EVERYTHING) == [
        {"ts_ms": T0, "grams": 2.5, "count": 4, "stable": True}
    ]


def test_stats_report_spool_gauges(store: TimeSeriesStore) -> None:
    stats = store.stats()
    for key in (
        "spool_points",
        "spool_oldest_age_s",
        "points_written",
        "write_errors",
        "points_rejected",
    ):
        assert key in stats
    assert stats["spool_points"] == 0


def test_concurrent_writers_lose_nothing(store: TimeSeriesStore) -> None:
    def work(w: int) -> None:
        for b in range(10):
            store.write([lvl(f"W{w}", T0 + b * 100 + i, float(i)) for i in range(100)])

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = store.query_downsampled(
        "bin_level", {}, "grams", T0, T0 + 1000, 1000, "count"
    )
    assert counts == [(T0, 4000)]
    assert store.query_raw("bin_level", {}, *EVERYTHING, limit=0) == []


def test_frame_write_equals_point_write(store) -> None:
    """write_frame is a faster path to exactly what write(frame.points()) stores."""
    from jitstock.server.tsdb import Frame

    t0 = 1_700_000_000_000
    tags = [(("bin", f"F{i % 3}"), ("site", "s 1")) for i in range(9)]
    frame = Frame(
        "frame_m",
        tags,
        ("grams", "count", "stable"),
        [[100.5 + i for i in range(9)], list(range(9)), [i % 2 == 0 for i in range(9)]],
        [t0 + i for i in range(9)],
    )
    store.write_frame(frame)  # first sight: the validating path
    store.write_frame(
        Frame(
            "frame_m",
            tags,
            frame.fields,
            frame.columns,
            [t0 + 100 + i for i in range(9)],
        )
    )  # fast path
    rows = store.query_raw("frame_m", {"bin": "F1"}, t0, t0 + 1000)
    assert [(r["ts_ms"], r["grams"], r["count"], r["stable"]) for r in rows] == [
        (t0 + i, 100.5 + i, i, i % 2 == 0) for i in (1, 4, 7)
    ] + [(t0 + 100 + i, 100.5 + i, i, i % 2 == 0) for i in (1, 4, 7)]
