"""Several `jitstock server` nodes on one PostgreSQL (issue 16, docs/cluster.md)."""
