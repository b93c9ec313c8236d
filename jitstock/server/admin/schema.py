"""Where the state database stands against the packaged migrations.

A database written by a newer release carries an Alembic revision this code does
not know; upgrading it would fail deep inside Alembic with a traceback, and
running on it could lose data, so both `jitstock admin init` and `jitstock
server` refuse it first with one readable line.
"""

from __future__ import annotations

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from jitstock.server.db.migrate import alembic_config, current_revision


class SchemaRefused(RuntimeError):
    """The database is at a revision this release does not know (made by a newer one)."""


def check_schema(url: str) -> str | None:
    """The database's revision (None: never migrated); SchemaRefused if unknown here."""
    revision = current_revision(url)
    if revision is None:
        return None
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        raise SchemaRefused(
            f"the database is at revision {revision!r}, which this release of jitstock "
            "does not know: it was made by a newer release. Downgrading is not "
            "supported; run the release that made it, or restore a backup taken "
            "before the upgrade"
        ) from None
    return revision
