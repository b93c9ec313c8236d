"""`jitstock bench edge --quick` runs, prints a table and writes JSON (numbers are not asserted).

The agent-process part starts a real Mosquitto and `jitstock-edge` per case; a short
window and four scales keep the test quick.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitstock.cli import main


@pytest.mark.slow
def test_bench_edge_writes_json_and_prints_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "edge", "--quick", "--duration", "3", "--scales", "4"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "edge.json").read_text())
    for key in (
        "stream_cpu_s_per_million_frames",
        "parse_only_pct_core_32_scales_10hz",
        "outbox_batches_per_s",
        "agent_idle_rss_mib",
        "agent_4_stream_rss_mib",
        "agent_4_sics_rss_mib",
    ):
        assert result[key] > 0
    # the agent process did work while measured (its CPU is not zero with scales attached)
    assert result["agent_4_stream_cpu_pct"] > 0
    assert result["agent_4_sics_cpu_pct"] > 0
    assert result["agent_window_s"] == 3
    # one reading per pick from the load cell model, none rejected
    assert result["stream_frames_rejected"] == 0
    assert result["stream_readings_published"] > 0
    out = capsys.readouterr().out
    assert "parse_only_pct_core_32_scales_10hz" in out
    assert "agent_4_sics_cpu_pct" in out
