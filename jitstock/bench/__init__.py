"""Benchmarks: `jitstock bench <name>|all --out DIR` prints a table per bench and writes DIR/<name>.json."""
