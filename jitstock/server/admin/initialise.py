"""`jitstock admin init`: bring the state database to this release and make sure an
admin can get in.  Safe to run again and again (after every upgrade, from a
deploy script): it migrates whatever is behind and creates a key only when no
admin key is live.
"""

from __future__ import annotations

from dataclasses import dataclass

from jitstock.clock import Clock
from jitstock.server.admin.accounts import NewKey, create_key, live_admin_keys
from jitstock.server.admin.schema import check_schema
from jitstock.server.api.auth import ensure_bootstrap_key
from jitstock.server.db.migrate import head_revision, upgrade
from jitstock.server.db.session import make_engine, make_session_factory, transaction
from jitstock.server.settings import ServerSettings

# The name of the key `init` creates (it shows in GET /api/v1/keys and the audit log).
FIRST_ADMIN_KEY_NAME = "admin (jitstock admin init)"


@dataclass(frozen=True, slots=True)
class InitResult:
    """What init did: the revisions before/after and the key it made (None: one existed)."""

    revision_before: str | None
    revision_after: str | None
    new_key: NewKey | None
    admin_keys: int
    # JITSTOCK_BOOTSTRAP_ADMIN_KEY was stored (hashed) by this run
    bootstrap_installed: bool = False


def initialise(settings: ServerSettings, clock: Clock) -> InitResult:
    """Migrate to head (refusing a newer database) and create the first admin key if none is live."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    before = check_schema(settings.db_url)  # SchemaRefused: made by a newer release
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        factory = make_session_factory(engine)
        now = clock.time_ms()
        # the configured key is what the server would seed at start: seed it now instead
        seeded = ensure_bootstrap_key(factory, settings.bootstrap_admin_key, now)
        with transaction(factory) as s:
            existing = len(live_admin_keys(s, now))
            new_key = (
                None
                if existing
                else create_key(s, FIRST_ADMIN_KEY_NAME, "admin", now_ms=now)
            )
    finally:
        engine.dispose()
    return InitResult(before, head_revision(), new_key, existing or 1, seeded)
