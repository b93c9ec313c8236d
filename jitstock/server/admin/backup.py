"""`jitstock admin backup` / `restore`: the state database and the history, into and
out of one directory.

What goes in (``manifest.json`` lists it):

- the state database: SQLite through sqlite3's online backup API (a consistent copy
  while the server writes; ``state.sqlite``), PostgreSQL with ``pg_dump -Fc``
  (``state.pgdump``), restored with ``pg_restore --clean --if-exists``;
- the history: the embedded SQLite store the same way (``history.sqlite``), or
  InfluxDB 1.x with ``influxd backup -portable`` (``influx/``) over its RPC port,
  restored with ``influxd restore -portable``; InfluxDB 2/3 or a managed InfluxDB
  is the plant's to back up;
- the InfluxDB spool (points written while InfluxDB was away) and the supplier
  link key, when present.

A restore migrates the database to this release afterwards, so a backup taken by
an older release comes back upgraded; one from a newer release is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.engine import URL, make_url

from jitstock.server.admin.schema import check_schema
from jitstock.server.db.migrate import alembic_config, current_revision, upgrade
from jitstock.server.db.session import normalise_url
from jitstock.server.private_files import ensure_private_file
from jitstock.server.settings import ServerSettings

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# pg_dump of a plant's state DB takes seconds; an hour means something is stuck.
TOOL_TIMEOUT_S = 3600.0
# InfluxDB 1.x's RPC (backup/restore) port when JITSTOCK_INFLUX_RPC is not set.
INFLUX_RPC_PORT = 8088
LINK_KEY_FILE = "supplier-links.key"


class BackupError(RuntimeError):
    """A backup or restore that could not be made; the message says which part and why."""


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(parsed.database)


def sqlite_copy(src: Path, dst: Path) -> None:
    """Copy a SQLite database page by page with the online backup API (writers may go on).

    The destination is replaced whole, so restoring over a live file leaves no old pages.
    """
    if not src.exists():
        raise BackupError(f"{src} does not exist")
    dst.parent.mkdir(parents=True, exist_ok=True)
    ensure_private_file(str(dst))
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    """libpq connection options for pg_dump/pg_restore; the password goes in the environment."""
    u: URL = make_url(normalise_url(url))
    args = ["--dbname", u.database or "postgres"]
    # a Unix socket (peer authentication) comes as ?host=/var/run/postgresql
    host = u.host or u.query.get("host")
    port = u.port or u.query.get("port")
    if host:
        args += ["--host", str(host)]
    if port:
        args += ["--port", str(port)]
    if u.username:
        args += ["--username", u.username]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    return args, env


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise BackupError(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what}: {argv[0]} did not finish") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise BackupError(f"{what}: {argv[0]} failed: {' / '.join(tail)}")


def influx_rpc(settings: ServerSettings) -> str:
    """host:port of InfluxDB's RPC service: JITSTOCK_INFLUX_RPC, else the HTTP host on 8088."""
    explicit = os.environ.get("JITSTOCK_INFLUX_RPC")
    if explicit:
        return explicit
    host = urlparse(settings.influx_url or "").hostname or "127.0.0.1"
    return f"{host}:{INFLUX_RPC_PORT}"


def backup(settings: ServerSettings, dest: Path, *, history: bool = True) -> list[str]:
    """Write a backup into ``dest`` (new or empty); one line per part written."""
    revision = check_schema(settings.db_url)  # SchemaRefused: a newer release's
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: back up into a new directory")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(dest, 0o700)  # it holds webhook secrets and key hashes
    done: list[str] = []
    parts: dict[str, Any] = {}
    path = _sqlite_path(settings.db_url)
    if path is not None:
        sqlite_copy(path, dest / "state.sqlite")
        parts["state"] = {"kind": "sqlite", "file": "state.sqlite"}
    else:
        args, env = _pg_args(settings.db_url)
        out = dest / "state.pgdump"
        _run(
            ["pg_dump", "--format=custom", "--no-owner", "--file", str(out), *args],
            "state database",
            env,
        )
        os.chmod(out, 0o600)
        parts["state"] = {"kind": "pg_dump", "file": "state.pgdump"}
    done.append(f"state database at revision {revision} -> {parts['state']['file']}")
    if history:
        parts["history"] = _backup_history(settings, dest, done)
    for name in (LINK_KEY_FILE, settings.spool_file.name):
        src = settings.data_dir / name
        if src.exists():
            if name.endswith(".db"):
                sqlite_copy(src, dest / name)
            else:
                shutil.copy2(src, dest / name)
            parts.setdefault("data_dir", []).append(name)
            done.append(f"{name} from the data directory")
    manifest = {
        "format": FORMAT_VERSION,
        "created_ms": int(time.time() * 1000),
        "revision": revision,
        "parts": parts,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return done


def _backup_history(
    settings: ServerSettings, dest: Path, done: list[str]
) -> dict[str, str]:
    if not settings.influx_url:
        if not settings.tsdb_file.exists():
            done.append(f"history: none yet ({settings.tsdb_file} not created)")
            return {"kind": "none"}
        sqlite_copy(settings.tsdb_file, dest / "history.sqlite")
        done.append(f"history (embedded store {settings.tsdb_file}) -> history.sqlite")
        return {"kind": "sqlite", "file": "history.sqlite"}
    rpc = influx_rpc(settings)
    _run(
        [
            "influxd",
            "backup",
            "-portable",
            "-database",
            settings.influx_db,
            "-host",
            rpc,
            str(dest / "influx"),
        ],
        "history (InfluxDB)",
    )
    done.append(
        f"history (InfluxDB database {settings.influx_db!r} via {rpc}) -> influx/"
    )
    return {"kind": "influxd-portable", "dir": "influx", "database": settings.influx_db}


def read_manifest(src: Path) -> dict[str, Any]:
    """The manifest of a backup directory, checked for what restore needs."""
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{src} has no {MANIFEST}: not a jitstock backup") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src / MANIFEST} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise BackupError(f"{src / MANIFEST}: unknown backup format")
    revision = manifest.get("revision")
    if revision is not None:
        from alembic.script import ScriptDirectory
        from alembic.util.exc import CommandError

        try:
            ScriptDirectory.from_config(alembic_config()).get_revision(str(revision))
        except CommandError:
            raise BackupError(
                f"the backup is at revision {revision!r}, made by a newer release "
                "of jitstock: restore it with that release"
            ) from None
    return manifest


def restore(
    settings: ServerSettings,
    src: Path,
    *,
    history: bool = True,
    replace_history: bool = False,
) -> list[str]:
    """Restore ``src`` over the configured database (the server must be stopped); lines done."""
    manifest = read_manifest(src)
    parts = manifest["parts"]
    state = parts["state"]
    done: list[str] = []
    path = _sqlite_path(settings.db_url)
    if state["kind"] == "sqlite":
        if path is None:
            raise BackupError(
                "the backup holds a SQLite database but JITSTOCK_DB_URL is PostgreSQL"
            )
        sqlite_copy(src / state["file"], path)
    elif state["kind"] == "pg_dump":
        if path is not None:
            raise BackupError(
                "the backup holds a PostgreSQL dump but JITSTOCK_DB_URL is SQLite"
            )
        args, env = _pg_args(settings.db_url)
        _run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                "--exit-on-error",
                *args,
                str(src / state["file"]),
            ],
            "state database",
            env,
        )
    else:
        raise BackupError(f"unknown state backup kind {state['kind']!r}")
    restored_at = current_revision(settings.db_url)
    upgrade(settings.db_url)
    done.append(
        f"state database restored at revision {restored_at}, now at "
        f"{current_revision(settings.db_url)}"
    )
    if history and "history" in parts:
        done.append(_restore_history(settings, src, parts["history"], replace_history))
    for name in parts.get("data_dir", []):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if name.endswith(".db"):
            sqlite_copy(src / name, settings.data_dir / name)
        else:
            shutil.copy2(src / name, settings.data_dir / name)
        done.append(f"{name} into the data directory")
    return done


def _restore_history(
    settings: ServerSettings, src: Path, part: dict[str, str], replace: bool
) -> str:
    if part["kind"] == "none":
        return "history: the backup had none"
    if part["kind"] == "sqlite":
        if settings.influx_url:
            raise BackupError(
                "the backup's history is the embedded store but JITSTOCK_INFLUX_URL is set"
            )
        sqlite_copy(src / part["file"], settings.tsdb_file)
        return f"history restored into {settings.tsdb_file}"
    if not settings.influx_url:
        raise BackupError(
            "the backup's history is InfluxDB but JITSTOCK_INFLUX_URL is not set"
        )
    if replace:
        _drop_influx_db(settings)
    rpc = influx_rpc(settings)
    rename = (
        ["-newdb", settings.influx_db] if part["database"] != settings.influx_db else []
    )
    _run(
        [
            "influxd",
            "restore",
            "-portable",
            "-db",
            part["database"],
            *rename,
            "-host",
            rpc,
            str(src / part["dir"]),
        ],
        "history (InfluxDB; if the database exists, pass --replace-history)",
    )
    return f"history restored into InfluxDB database {settings.influx_db!r} via {rpc}"


def _drop_influx_db(settings: ServerSettings) -> None:
    import httpx

    from jitstock.server.tsdb import influxql

    auth = (
        (settings.influx_user, settings.influx_password or "")
        if settings.influx_user and not settings.influx_token
        else None
    )
    headers = (
        {"Authorization": f"Token {settings.influx_token}"}
        if settings.influx_token
        else {}
    )
    try:
        r = httpx.post(
            f"{settings.influx_url}/query",
            data={"q": f"DROP DATABASE {influxql.quote_ident(settings.influx_db)}"},
            auth=auth,
            headers=headers,
            timeout=30.0,
        )
    except httpx.HTTPError as exc:
        raise BackupError(f"history: InfluxDB unreachable: {exc}") from None
    if r.status_code >= 400 or "error" in r.json()["results"][0]:
        raise BackupError(f"history: could not drop the database: {r.text[:200]}")
