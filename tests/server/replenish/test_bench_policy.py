"""`jitstock bench policy --quick`: output structure, determinism and the claim against classic ROP."""

from __future__ import annotations

import json

import pytest

from jitstock.bench.cli import main

GROUPS = {
    "overall",
    "abc_A",
    "abc_B",
    "abc_C",
    "smooth",
    "erratic",
    "intermittent",
    "lumpy",
}
METRICS = {
    "fill_rate",
    "cycle_service_level",
    "avg_on_hand_units",
    "avg_on_hand_value",
    "stockout_days",
    "orders",
}


def _run(tmp_path, name):
    out = tmp_path / name
    assert main(["policy", "--quick", "--seed", "7", "--out", str(out)]) == 0
    return json.loads((out / "policy.json").read_text())


@pytest.mark.slow
def test_quick_bench_structure_determinism_and_claim(tmp_path, capsys):
    r = _run(tmp_path, "a")
    assert "== policy ==" in capsys.readouterr().out
    assert set(r["policies"]) == {
        "jitstock",
        "classic_rop",
        "classic_rop_equal_fill",
        "minmax_equal_fill",
    }
    for res in r["policies"].values():
        assert GROUPS <= set(res)
        for group in GROUPS:
            assert METRICS <= set(res[group])
            assert 0 <= res[group]["fill_rate"] <= 1
    for name in ("jitstock", "classic_rop", "minmax"):
        curve = r["curve"][name]
        assert len(curve) >= 5
        # more stock buys more service along every curve
        fills = [p["fill_rate"] for p in curve]
        assert fills == sorted(fills)

    jit = r["policies"]["jitstock"]["overall"]
    classic = r["policies"]["classic_rop"]["overall"]
    classic_eq = r["policies"]["classic_rop_equal_fill"]["overall"]
    minmax = r["policies"]["minmax_equal_fill"]["overall"]
    # the claim: more service for no more stock, or less stock for the same service
    better_service = (
        jit["fill_rate"] >= classic["fill_rate"]
        and jit["avg_on_hand_value"] <= classic["avg_on_hand_value"]
    )
    less_stock = (
        classic_eq["fill_rate"] >= jit["fill_rate"]
        and jit["avg_on_hand_value"] < classic_eq["avg_on_hand_value"]
    )
    assert better_service or less_stock
    assert minmax["fill_rate"] >= jit["fill_rate"]
    assert jit["avg_on_hand_value"] < minmax["avg_on_hand_value"]

    again = _run(tmp_path, "b")
    assert again["policies"] == r["policies"]
    assert again["curve"] == r["curve"]
