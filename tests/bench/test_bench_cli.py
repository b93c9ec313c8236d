"""`jitstock bench edge --quick` runs, prints a table and writes JSON (numbers are not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitstock.cli import main


def test_bench_edge_writes_json_and_prints_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "edge", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "edge.json").read_text())
    for key in (
        "stream_cpu_s_per_million_frames",
        "pct_core_32_scales_10hz",
        "outbox_batches_per_s",
    ):
        assert result[key] > 0
    # one reading per pick from the load cell model, none rejected
    assert result["stream_frames_rejected"] == 0
    assert result["stream_readings_published"] > 0
    assert "pct_core_32_scales_10hz" in capsys.readouterr().out
