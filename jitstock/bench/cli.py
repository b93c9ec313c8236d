"""`jitstock bench edge|all --out DIR`: run benchmarks, print a table each, write DIR/<name>.json.

A bench is a module with ``run(args: argparse.Namespace) -> dict[str, float | int | str]``;
add one by adding a line to :data:`BENCHES` (module imported lazily, so the edge
install does not need the server's dependencies).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

# bench name -> module with run(args) -> dict of numbers
BENCHES: dict[str, str] = {
    "cluster": "jitstock.bench.cluster",
    "edge": "jitstock.bench.edge",
    "ingest": "jitstock.bench.ingest",
    "policy": "jitstock.bench.policy",
    "ui": "jitstock.bench.ui",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jitstock bench",
        description="measure this machine; numbers, not pass/fail",
    )
    parser.add_argument("name", choices=[*BENCHES, "all"], help="which bench to run")
    parser.add_argument(
        "--out", default="bench-results", help="directory for <name>.json"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller workloads (smoke runs, CI)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (simulations)")
    parser.add_argument(
        "--seeds",
        default=None,
        help="policy: several seeds in one run with a summary table, e.g. 1-15 or 1,4,9",
    )
    parser.add_argument(
        "--state-db",
        default=None,
        help="ingest, cluster: PostgreSQL admin DSN; the servers keep their state in a "
        "fresh database there (ingest: default SQLite; cluster: default the local "
        "postgresql://postgres@127.0.0.1:5432/postgres, one database per setup, "
        "dropped at its end)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="edge: seconds the agent process is measured per case (default 60, quick 5); "
        "ingest --shape steady: seconds of load before the CPU window (default 600)",
    )
    parser.add_argument(
        "--scales",
        default=None,
        help="edge: comma-separated simulated scales per agent, e.g. 8,32 (default; quick 8)",
    )
    parser.add_argument(
        "--nodes",
        default=None,
        help="cluster: comma-separated cluster sizes to measure after the single-node "
        "baseline, e.g. 1,2 (default)",
    )
    parser.add_argument(
        "--rates",
        default=None,
        help="ingest: comma-separated readings/s to try, e.g. 50000,100000",
    )
    parser.add_argument(
        "--shape",
        choices=["sweep", "resend", "steady"],
        default="sweep",
        help="ingest: 'sweep' (every reading a pick, rising rates), 'resend' (issue 12: "
        "every tick re-sends all bins, 200 reorder crossings in 30 s; --rates then sweeps "
        "for the highest sustained rate) or 'steady' (the re-send load at --rates "
        "(default 1000/s) for --duration seconds, then the server's CPU over one minute)",
    )
    parser.add_argument(
        "--baseline-tree",
        default=None,
        help="ingest --shape resend: a checkout of another jitstock version, measured "
        "in the same run as a baseline (its own server process, PYTHONPATH=<tree>); "
        "several, comma-separated, are measured one after the other (base, base2, ...)",
    )
    parser.add_argument(
        "--no-thread-variant",
        action="store_true",
        help="ingest --shape resend: skip the server with in-process sender threads "
        "(JITSTOCK_WEBHOOK_SENDER=thread), measured beside the default otherwise",
    )
    return parser


def print_table(name: str, result: dict[str, Any]) -> None:
    """Print one bench's numbers as an aligned two-column table."""
    width = max(len(k) for k in result) if result else 0
    print(f"== {name} ==")
    for key, value in result.items():
        shown = (
            f"{value:,.3f}"
            if isinstance(value, float)
            else f"{value:,}"
            if isinstance(value, int)
            else str(value)
        )
        print(f"  {key:<{width}}  {shown:>16}")


def main(argv: list[str]) -> int:
    """Run the chosen bench(es); exit code 0 when all ran."""
    args = _parser().parse_args(argv)
    names = list(BENCHES) if args.name == "all" else [args.name]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        module = importlib.import_module(BENCHES[name])
        result: dict[str, Any] = module.run(args)
        # a bench with nested results (tables per rate) prints itself
        printer = getattr(module, "print_result", None)
        if printer is not None:
            print(f"== {name} ==")
            printer(result)
        else:
            print_table(name, result)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
