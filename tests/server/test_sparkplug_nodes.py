"""Issue 17: the Sparkplug host rules of NodeTable, step by step — seq 0..255 wrapping per
edge node and reset by NBIRTH, gaps and data before BIRTH, the NDEATH bdSeq check, the
rebirth rate limit and the request it holds back until the interval is over."""

from __future__ import annotations

import pysparkplug as spb

from jitstock.server.sparkplug.nodes import NodeTable

KEY = ("Plant1", "Line1")


def nbirth(seq: int = 0, bd_seq: int | None = 7) -> spb.NBirth:
    metrics = (
        (spb.Metric(1, "bdSeq", spb.DataType.INT64, value=bd_seq),)
        if bd_seq is not None
        else ()
    )
    return spb.NBirth(1, seq, metrics)


def test_seq_runs_0_to_255_and_wraps_a_gap_puts_the_node_out_of_step() -> None:
    t = NodeTable()
    assert t.check_seq(KEY, 1) == "sparkplug_no_birth"
    t.nbirth(KEY, nbirth(seq=0))
    for seq in [*range(1, 256), 0, 1]:
        assert t.check_seq(KEY, seq) is None, seq
    assert t.check_seq(KEY, 5) == "sparkplug_seq_gap"
    # out of step until the next NBIRTH, whatever comes
    assert t.check_seq(KEY, 6) == "sparkplug_no_birth"
    assert t.check_seq(KEY, 2) == "sparkplug_no_birth"
    t.nbirth(KEY, nbirth(seq=0))
    assert t.check_seq(KEY, 1) is None
    # a repeated seq is a gap too (a replay or a second node under the same id)
    assert t.check_seq(KEY, 1) == "sparkplug_seq_gap"


def test_an_older_ndeath_is_a_late_will_a_current_or_newer_one_kills() -> None:
    t = NodeTable()
    t.nbirth(KEY, nbirth(bd_seq=7))
    assert t.ndeath(KEY, 6) is False
    assert t.ndeath(KEY, 250) is False  # 7 - 250 mod 256 = 13 behind: older
    assert t.nodes[KEY].born
    assert t.ndeath(KEY, 8) is True  # pysparkplug's clean NDEATH carries the next bdSeq
    assert (t.nodes[KEY].born, t.nodes[KEY].dead) == (False, True)
    assert (
        t.sensor_fault(KEY, "")
        == "Sparkplug edge node Plant1/Line1 is offline (NDEATH)"
    )
    t.nbirth(KEY, nbirth(bd_seq=255))
    assert t.ndeath(KEY, 0) is True  # across the wrap: newer
    t.nbirth(KEY, nbirth(bd_seq=None))
    assert t.ndeath(KEY, 3) is True  # no bdSeq in the BIRTH: nothing to compare


def test_device_death_marks_only_that_device_and_a_dbirth_clears_it() -> None:
    t = NodeTable()
    t.nbirth(KEY, nbirth())
    t.dbirth(KEY, "Scale1", spb.DBirth(1, 1, ()))
    t.ddeath(KEY, "Scale1")
    assert t.sensor_fault(KEY, "Scale1") == (
        "Sparkplug device Plant1/Line1/Scale1 is offline (DDEATH)"
    )
    assert t.sensor_fault(KEY, "Scale2") is None
    assert t.sensor_fault(KEY, "") is None
    t.dbirth(KEY, "Scale1", spb.DBirth(1, 2, ()))
    assert t.sensor_fault(KEY, "Scale1") is None
    assert t.sensor_fault(("Plant1", "never-heard-of"), "") is None


def test_rebirth_requests_are_rate_limited_and_a_held_back_one_goes_out_later() -> None:
    t = NodeTable()
    assert t.may_request_rebirth(KEY, 100.0, 10.0)
    assert not t.may_request_rebirth(KEY, 105.0, 10.0)
    assert t.rebirths_due(109.0, 10.0) == []
    assert t.rebirths_due(110.0, 10.0) == [KEY]
    assert t.may_request_rebirth(KEY, 110.0, 10.0)
    assert t.rebirths_due(200.0, 10.0) == []
    # a BIRTH that arrives meanwhile makes the held-back request moot
    assert not t.may_request_rebirth(KEY, 111.0, 10.0)
    t.nbirth(KEY, nbirth())
    assert t.rebirths_due(200.0, 10.0) == []
