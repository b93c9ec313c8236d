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

import os
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import URL, make_url

from jitstock.server.admin.schema import check_schema
from jitstock.server.db.migrate import alembic_config, current_revision, upgrade
from jitstock.server.db.session import normalise_url
from jitstock.server.private_files import ensure_private_file
from jitstock.server.settings import ServerSettings

MANIFEST = "manifest.json"
FORMAT_VERSION: Literal[1] = 1
# pg_dump of a plant's state DB takes seconds; an hour means something is stuck.
TOOL_TIMEOUT_S = 3600.0
# InfluxDB 1.x's RPC (backup/restore) port when JITSTOCK_INFLUX_RPC is not set.
INFLUX_RPC_PORT = 8088
# A reachable RPC port accepts at once; influxd's own retries would take minutes.
RPC_PROBE_S = 5.0
# data-dir files a backup carries: the key of the links in sent order e-mails, and the
# points still waiting for InfluxDB (named by ServerSettings.spool_file)
DATA_DIR_FILES: tuple[Literal["supplier-links.key", "influx-spool.db"], ...] = (
    "supplier-links.key",
    "influx-spool.db",
)


class BackupError(RuntimeError):
    """A backup or restore that could not be made; the message says which part and why."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatePart(_Part):
    """The state database's file in the backup (fixed names: a manifest never names a path)."""

    kind: Literal["sqlite", "pg_dump"]
    file: Literal["state.sqlite", "state.pgdump"]


class HistoryPart(_Part):
    """The history: none, the embedded store's file, or an influxd portable backup."""

    kind: Literal["none", "sqlite", "influxd-portable"]
    file: Literal["history.sqlite"] | None = None
    dir: Literal["influx"] | None = None
    database: (
        Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\w.-]+$")] | None
    ) = None


class Parts(_Part):
    """What a backup holds."""

    state: StatePart
    history: HistoryPart | None = None
    data_dir: list[Literal["supplier-links.key", "influx-spool.db"]] = []


class Manifest(_Part):
    """manifest.json of a backup directory."""

    format: Literal[1]
    created_ms: int
    revision: str | None
    parts: Parts


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(parsed.database)


def sqlite_copy(src: Path, dst: Path) -> None:
    """Copy a SQLite database page by page with the online backup API (writers may go on).

    The destination is replaced whole, so restoring over a live file leaves no old pages,
    and is left in rollback-journal mode, checkpointed: one self-contained file with no
    ``-wal``/``-shm`` beside it (a server opening it switches it back to WAL).  The
    source is opened read-write, though only read: a read-only connection to a WAL
    database creates ``-wal``/``-shm`` files it may not remove, and left them beside
    the stopped server's database and inside the backup a restore read from.
    """
    if not src.exists():
        raise BackupError(f"{src} does not exist")
    dst.parent.mkdir(parents=True, exist_ok=True)
    ensure_private_file(str(dst))
    source = _open_source(src)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
            # out of WAL: the pages go into the file itself and -wal/-shm are removed
            mode = target.execute("PRAGMA journal_mode=DELETE").fetchone()
            if mode is None or str(mode[0]).lower() != "delete":
                raise BackupError(f"{dst}: could not leave WAL mode ({mode})")
        finally:
            target.close()
    finally:
        source.close()


def _open_source(src: Path) -> sqlite3.Connection:
    """src for reading: read-write if the file may be written (the last connection to a
    WAL database checkpoints it and removes its -wal/-shm on close), else read-only (a
    backup on read-only media)."""
    try:
        conn = sqlite3.connect(f"file:{src}?mode=rw", uri=True)
        conn.execute("PRAGMA query_only=ON")  # a copy never changes its source
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(f"file:{src}?mode=ro", uri=True)


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
    user = u.username or u.query.get("user")
    if user:
        args += ["--username", str(user)]
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


def _probe_rpc(rpc: str) -> None:
    """Fail at once when InfluxDB's RPC port is closed: influxd itself retries for minutes."""
    host, _, port = rpc.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), RPC_PROBE_S):
            pass
    except (OSError, ValueError) as exc:
        raise BackupError(
            f"history: InfluxDB's backup port {rpc} is unreachable ({exc}); set "
            "JITSTOCK_INFLUX_RPC to its bind-address, or run this on the InfluxDB machine"
        ) from None


def backup(settings: ServerSettings, dest: Path, *, history: bool = True) -> list[str]:
    """Write a backup into ``dest`` (new or empty); one line per part written."""
    revision = check_schema(settings.db_url)  # SchemaRefused: a newer release's
    if history and settings.influx_url:
        _probe_rpc(influx_rpc(settings))  # before anything is written
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: back up into a new directory")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(dest, 0o700)  # it holds webhook secrets and key hashes
    done: list[str] = []
    path = _sqlite_path(settings.db_url)
    if path is not None:
        state = StatePart(kind="sqlite", file="state.sqlite")
        sqlite_copy(path, dest / state.file)
    else:
        state = StatePart(kind="pg_dump", file="state.pgdump")
        args, env = _pg_args(settings.db_url)
        _run(
            [
                "pg_dump",
                "--format=custom",
                "--no-owner",
                "--file",
                str(dest / state.file),
                *args,
            ],
            "state database",
            env,
        )
        os.chmod(dest / state.file, 0o600)
    done.append(f"state database at revision {revision} -> {state.file}")
    hist = _backup_history(settings, dest, done) if history else None
    copied: list[Literal["supplier-links.key", "influx-spool.db"]] = []
    for name in DATA_DIR_FILES:
        src = settings.data_dir / name
        if src.exists():
            _copy_data_file(src, dest / name)
            copied.append(name)
            done.append(f"{name} from the data directory")
    manifest = Manifest(
        format=FORMAT_VERSION,
        created_ms=int(time.time() * 1000),
        revision=revision,
        parts=Parts(state=state, history=hist, data_dir=copied),
    )
    (dest / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return done


def _copy_data_file(src: Path, dst: Path) -> None:
    if src.suffix == ".db":
        sqlite_copy(src, dst)  # the spool may be written meanwhile
    else:
        shutil.copy2(src, dst)


def _backup_history(
    settings: ServerSettings, dest: Path, done: list[str]
) -> HistoryPart:
    if not settings.influx_url:
        if not settings.tsdb_file.exists():
            done.append(f"history: none yet ({settings.tsdb_file} not created)")
            return HistoryPart(kind="none")
        part = HistoryPart(kind="sqlite", file="history.sqlite")
        sqlite_copy(settings.tsdb_file, dest / "history.sqlite")
        done.append(f"history (embedded store {settings.tsdb_file}) -> history.sqlite")
        return part
    part = HistoryPart(
        kind="influxd-portable", dir="influx", database=settings.influx_db
    )
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
    return part


def read_manifest(src: Path) -> Manifest:
    """The manifest of a backup directory, checked before anything is touched."""
    try:
        manifest = Manifest.model_validate_json((src / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise BackupError(f"{src} has no {MANIFEST}: not a jitstock backup") from None
    except OSError as exc:
        raise BackupError(f"{src / MANIFEST} is unreadable: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "document"
        raise BackupError(
            f"{src / MANIFEST} is not a jitstock backup manifest ({where}: {first['msg']})"
        ) from None
    if manifest.revision is not None:
        try:
            ScriptDirectory.from_config(alembic_config()).get_revision(
                manifest.revision
            )
        except CommandError:
            raise BackupError(
                f"the backup is at revision {manifest.revision!r}, made by a newer "
                "release of jitstock: restore it with that release"
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
    parts = read_manifest(src).parts
    done: list[str] = []
    path = _sqlite_path(settings.db_url)
    if parts.state.kind == "sqlite":
        if path is None:
            raise BackupError(
                "the backup holds a SQLite database but JITSTOCK_DB_URL is PostgreSQL"
            )
        sqlite_copy(src / parts.state.file, path)
    else:
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
                str(src / parts.state.file),
            ],
            "state database",
            env,
        )
    restored_at = current_revision(settings.db_url)
    upgrade(settings.db_url)
    done.append(
        f"state database restored at revision {restored_at}, now at "
        f"{current_revision(settings.db_url)}"
    )
    if history and parts.history is not None:
        done.append(_restore_history(settings, src, parts.history, replace_history))
    for name in parts.data_dir:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _copy_data_file(src / name, settings.data_dir / name)
        done.append(f"{name} into the data directory")
    return done


def _restore_history(
    settings: ServerSettings, src: Path, part: HistoryPart, replace: bool
) -> str:
    if part.kind == "none":
        return "history: the backup had none"
    if part.kind == "sqlite":
        if settings.influx_url:
            raise BackupError(
                "the backup's history is the embedded store but JITSTOCK_INFLUX_URL is set"
            )
        sqlite_copy(src / "history.sqlite", settings.tsdb_file)
        return f"history restored into {settings.tsdb_file}"
    if not settings.influx_url:
        raise BackupError(
            "the backup's history is InfluxDB but JITSTOCK_INFLUX_URL is not set"
        )
    if part.database is None:
        raise BackupError("the backup's InfluxDB part names no database")
    rpc = influx_rpc(settings)
    _probe_rpc(rpc)
    if replace:
        _drop_influx_db(settings)
    rename = (
        ["-newdb", settings.influx_db] if part.database != settings.influx_db else []
    )
    _run(
        [
            "influxd",
            "restore",
            "-portable",
            "-db",
            part.database,
            *rename,
            "-host",
            rpc,
            str(src / "influx"),
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
