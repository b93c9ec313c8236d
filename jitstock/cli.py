"""`jitstock` command: dispatches to the subcommand's own module (imported lazily,
so the edge install does not need the server's dependencies)."""

from __future__ import annotations

import importlib
import sys

# subcommand -> module with a `main(argv: list[str]) -> int`
SUBCOMMANDS = {
    "sim": (
        "jitstock.firmware_sim.cli",
        "simulated scales, scanners and fleets on pseudo-terminals",
    ),
    "server": (
        "jitstock.server.cli",
        "run the server (ingest, replenishment, API, dashboard)",
    ),
    "admin": (
        "jitstock.server.admin.cli",
        "install and housekeeping: init, check, backup, restore, users, keys",
    ),
    "demo": ("jitstock.demo", "the whole system on embedded defaults"),
    "bench": ("jitstock.bench.cli", "benchmarks that print numbers and write JSON"),
}


def usage() -> str:
    lines = ["usage: jitstock <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `jitstock` console script."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"jitstock: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
