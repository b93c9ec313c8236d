"""A Sparkplug metric whose value cannot be decoded as its BIRTH's datatype, through a
real Mosquitto to a real server: that metric is refused, the rest of its message applies
and its seq counts as received (the next message is no gap)."""

from __future__ import annotations

import httpx
import pysparkplug as spb

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
