"""A Sparkplug metric whose value cannot be decoded as its BIRTH's datatype, through a
real Mosquitto to a real server: that metric is refused, the rest of its message applies
and its seq counts as received (the next message is no gap)."""

from __future__ import annotations

import httpx
import pysparkplug as spb
import pytest
from pysparkplug._protobuf import Payload as PbPayload

from tests.server import test_sparkplug_input as spi
from tests.server.server_support import wait_until
from tests.server.test_sparkplug_input import (
    GROUP,
    NODE,
    TARE_G,
    UNIT_G,
    Gateway,
    counter,
    expect,
    m,
    now_ms,
    on_hand,
    wait_followed,
)

D = spb.DataType
# B1-B4 fed by gw-1; the node's "Tank Level" is B3 by count (1 g parts, no tare)
plant = spi.plant


def test_an_undecodable_metric_loses_only_itself(
    plant: tuple[httpx.Client, Gateway],
) -> None:
    """The outside tester's repro: NDATA with a mapped INT32 count and an unmapped INT32
    sent 2**40 (UINT64, no datatype in the message, as gateways send DATA) was rejected
    whole as sparkplug_malformed ("Int32 overflow"): the count was lost, and the next,
    valid NDATA was a sparkplug_seq_gap that stalled the node until a rebirth."""
    client, gw = plant

    wait_followed(client, gw)
    gw.seq = 0
    birth = (
        m("bdSeq", D.INT64, 1),
        m("Tank Level", D.INT32, 10, alias=1),
        m("Other", D.INT32, 0, alias=9),
    )
    gw.send("NBIRTH", spb.NBirth(now_ms(), seq=0, metrics=birth))
    gw.dbirth(gross_g=TARE_G + 5 * UNIT_G, parts=0)  # seq 1
    wait_until(lambda: on_hand(client, "B3") == 10, what="the BIRTH applied")
    gaps = counter(client, "batches", "sparkplug_seq_gap")
    malformed = counter(client, "batches", "sparkplug_malformed")

    data = spb.NData(
        now_ms(),
        seq=gw.next_seq(),  # 2
        metrics=(m(None, D.INT32, 33, alias=1), m(None, D.UINT64, 2**40, alias=9)),
    )
    gw.raw(f"spBv1.0/{GROUP}/NDATA/{NODE}", data.encode(include_dtypes=False))
    wait_until(lambda: on_hand(client, "B3") == 33, what="the good metric applied")
    expect(client, "items", "sparkplug_bad_value")

    gw.ndata(m(None, D.INT32, 34, alias=1))  # seq 3: the next one, no gap
    wait_until(lambda: on_hand(client, "B3") == 34, what="the next NDATA applied")
    assert counter(client, "batches", "sparkplug_seq_gap") == gaps
    assert counter(client, "batches", "sparkplug_malformed") == malformed


def test_a_birth_with_one_undecodable_value_applies_the_rest(
    plant: tuple[httpx.Client, Gateway],
) -> None:
    """An NBIRTH declaring an INT32 tag whose value is 2**40 was refused whole
    (sparkplug_malformed): the node's mapped counts never arrived and every NDATA after
    it was refused until a rebirth, which repeated the same BIRTH.  Now that value alone
    is refused; its declaration stands, so NDATA by its alias is understood."""
    client, gw = plant

    wait_followed(client, gw)
    birth = spb.NBirth(
        now_ms(),
        seq=0,
        metrics=(
            m("bdSeq", D.INT64, 1),
            m("Tank Level", D.INT32, 12, alias=1),
            m("Other", D.INT32, 0, alias=9),
        ),
    )
    raw = PbPayload.FromString(birth.encode())
    other = next(x for x in raw.metrics if x.name == "Other")
    other.long_value = 2**40  # INT32 declared, a value no INT32 holds
    with pytest.raises(OverflowError):  # what the library makes of it alone
        spb.NBirth.decode(raw.SerializeToString())
    malformed = counter(client, "batches", "sparkplug_malformed")
    unknown = counter(client, "batches", "sparkplug_unknown_alias")
    bad = counter(client, "items", "sparkplug_bad_value")

    gw.seq = 0
    gw.raw(f"spBv1.0/{GROUP}/NBIRTH/{NODE}", raw.SerializeToString())
    wait_until(lambda: on_hand(client, "B3") == 12, what="the BIRTH's good value")
    expect(client, "items", "sparkplug_bad_value", bad + 1)
    assert counter(client, "batches", "sparkplug_malformed") == malformed

    gw.ndata(m(None, D.INT32, 7, alias=9), m(None, D.INT32, 13, alias=1))  # seq 1
    wait_until(lambda: on_hand(client, "B3") == 13, what="NDATA after that BIRTH")
    assert counter(client, "batches", "sparkplug_unknown_alias") == unknown
    assert counter(client, "batches", "sparkplug_malformed") == malformed
    assert counter(client, "items", "sparkplug_bad_value") == bad + 1


def test_a_birth_metric_without_a_name_still_refuses_the_birth(
    plant: tuple[httpx.Client, Gateway],
) -> None:
    """A BIRTH must declare each metric's name and datatype; a bad value on a metric
    that declares neither is not a declaration to keep: the BIRTH is malformed."""
    client, gw = plant

    wait_followed(client, gw)
    birth = spb.NBirth(
        now_ms(),
        seq=0,
        metrics=(m("bdSeq", D.INT64, 1), m("Tank Level", D.INT32, 12, alias=1)),
    )
    raw = PbPayload.FromString(birth.encode())
    nameless = raw.metrics.add()
    nameless.alias = 9
    nameless.datatype = D.INT32
    nameless.long_value = 2**40
    malformed = counter(client, "batches", "sparkplug_malformed")
    gw.raw(f"spBv1.0/{GROUP}/NBIRTH/{NODE}", raw.SerializeToString())
    expect(client, "batches", "sparkplug_malformed", malformed + 1)
    no_birth = counter(client, "batches", "sparkplug_no_birth")
    gw.seq = 0
    gw.ndata(m(None, D.INT32, 14, alias=1))  # seq 1: the node was not born by it
    expect(client, "batches", "sparkplug_no_birth", no_birth + 1)
