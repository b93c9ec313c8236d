"""`jitstock demo` stopped by a terminal's Ctrl-C: SIGINT goes to the whole foreground
process group, not to the demo alone.  The demo's children must not stop on it by
themselves: the demo stops its server before its agents (README, "The two commands"),
so stopping records no agent offline (a restart would open with critical
``agent_offline`` alerts), and it leaves no child behind.  Deadlines are bounds against
hanging, not speed targets."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.demo_support import START_DEADLINE_S, start_demo, stop_demo, wait_up
from tests.services import free_port

STOP_DEADLINE_S = 60.0


def _descendants(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of every process below ``root`` (from /proc)."""
    parent: dict[int, int] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parent[int(entry.name)] = int(fields[1])
        started[int(entry.name)] = fields[19]
    found: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parent.items() if pp == pid and p not in found]
        found.update(kids)
        todo.extend(kids)
    return {(p, started[p]) for p in found}


def _alive(proc: tuple[int, str]) -> bool:
    pid, started = proc
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] == started and fields[0] != "Z"


def _agents(db: Path) -> dict[str, tuple[int, str | None]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, online, reported_state FROM agents").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.mark.slow
@pytest.mark.timeout(START_DEADLINE_S + 2 * STOP_DEADLINE_S + 60)
def test_ctrl_c_stops_the_server_before_its_agents_and_leaves_no_child(
    tmp_path: Path,
) -> None:
    port = free_port()
    demo = start_demo(
        tmp_path, port, START_DEADLINE_S + 2 * STOP_DEADLINE_S, own_group=True
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as api:
            wait_up(api, demo, tmp_path / "demo.err")
            deadline = time.monotonic() + START_DEADLINE_S
            while True:  # every agent has said it is online
                agents = api.get("/api/v1/agents").json()
                if agents and all(a["reported_state"] == "online" for a in agents):
                    break
                assert time.monotonic() < deadline, agents
                assert demo.poll() is None, (tmp_path / "demo.err").read_text()
                time.sleep(0.5)
        children = _descendants(demo.pid)
        assert len(children) >= len(agents), children
        os.killpg(demo.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        demo.wait(timeout=STOP_DEADLINE_S)
    finally:
        if demo.poll() is None:
            stop_demo(demo)
    err = (tmp_path / "demo.err").read_text()
    assert demo.returncode == 0, err[-3000:]
    # its agents stopped after its server: the state DB still has them online
    recorded = _agents(tmp_path / "demo" / "jitstock.db")
    assert recorded, recorded
    assert all(r == (1, "online") for r in recorded.values()), recorded
    deadline = time.monotonic() + STOP_DEADLINE_S
    while left := [c for c in children if _alive(c)]:
        if time.monotonic() > deadline:
            for pid, _ in left:
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"children left after the demo stopped: {left}")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(START_DEADLINE_S + STOP_DEADLINE_S + 60)
def test_a_demo_without_data_dir_cleans_its_temp_dir_but_keeps_its_log(
    tmp_path: Path,
) -> None:
    """An outside try: a demo run without --data-dir deleted its log with its temp
    dir, so a run that went wrong left nothing to read.  The log stays beside it."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITSTOCK_")}
    done = subprocess.run(
        [sys.executable, "-m", "jitstock.cli", "demo", "--duration", "2"]
        + ["--port", str(free_port())],
        env={**env, "TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        timeout=START_DEADLINE_S + STOP_DEADLINE_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("log kept: ")]
    kept = Path(line.removeprefix("log kept: "))
    assert kept.parent == temp
    text = kept.read_text()
    assert "jitstock.server" in text, text[-2000:]
    assert [p.name for p in temp.iterdir()] == [kept.name]  # the data dir is gone
