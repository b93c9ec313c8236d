"""`jitstock admin`: argument parsing and output; the work is in the sibling modules.

Exit status: 0 done (or already done), 1 a check is red or a step failed,
2 refused (configuration, a database newer than this release, bad arguments).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from jitstock.clock import REAL_CLOCK
from jitstock.server.settings import ServerSettings, SettingRefused

EXIT_FAILED = 1
EXIT_REFUSED = 2


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _key_id(text: str) -> int:
    """A key id as the database stores it (a positive 64-bit integer)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a key id: {text!r}") from None
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"no key has id {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jitstock admin",
        description="Install and housekeeping for a jitstock server "
        "(configuration from the same JITSTOCK_* variables as `jitstock server`).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser(
        "init", help="migrate the database to this release; create the first admin key"
    )
    sub.add_parser(
        "check", help="configuration, database, broker and history store: ok or FAIL"
    )
    b = sub.add_parser("backup", help="state database and history into a new directory")
    b.add_argument("dest", type=Path)
    b.add_argument("--no-history", action="store_true", help="the state database only")
    r = sub.add_parser(
        "restore", help="a backup over the configured stores (server stopped)"
    )
    r.add_argument("src", type=Path)
    r.add_argument("--no-history", action="store_true", help="the state database only")
    r.add_argument(
        "--replace-history",
        action="store_true",
        help="drop the InfluxDB database before restoring it",
    )
    u = sub.add_parser("users", help="dashboard users: list, create, disable, enable")
    usub = u.add_subparsers(dest="action", required=True, metavar="action")
    usub.add_parser("list")
    uc = usub.add_parser("create")
    uc.add_argument("username")
    uc.add_argument("--role", default="viewer", choices=("viewer", "manager", "admin"))
    uc.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (else prompt twice)",
    )
    for name in ("disable", "enable"):
        usub.add_parser(name).add_argument("username")
    k = sub.add_parser("keys", help="API keys: list, create, revoke")
    ksub = k.add_subparsers(dest="action", required=True, metavar="action")
    ksub.add_parser("list")
    kc = ksub.add_parser("create")
    kc.add_argument("name")
    kc.add_argument("--role", default="viewer", choices=("viewer", "manager", "admin"))
    ksub.add_parser("revoke").add_argument("id", type=_key_id)
    return p


def main(argv: list[str]) -> int:
    """Entry point of `jitstock admin`."""
    args = _parser().parse_args(argv)
    from jitstock.server.cli import load_settings

    try:
        settings = load_settings({})
    except SettingRefused as exc:
        if args.command == "check":
            print(f"FAIL  configuration refused: {exc}")
        sys.stderr.write(f"jitstock admin: refused: {exc}\n")
        return EXIT_REFUSED
    from jitstock.server.admin.schema import SchemaRefused

    commands: dict[str, Callable[[ServerSettings, argparse.Namespace], int]] = {
        "init": _init,
        "check": _check,
        "backup": _backup,
        "restore": _restore,
        "users": _users,
        "keys": _keys,
    }
    try:
        return commands[args.command](settings, args)
    except SchemaRefused as exc:
        sys.stderr.write(f"jitstock admin: refused: {exc}\n")
        return EXIT_REFUSED
    except SQLAlchemyError as exc:  # unreachable, refused login, missing database
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        sys.stderr.write(f"jitstock admin {args.command}: database: {reason}\n")
        return EXIT_FAILED
    except (OSError, ValueError) as exc:  # an unusable path or database URL
        sys.stderr.write(f"jitstock admin {args.command}: {exc}\n")
        return EXIT_FAILED


def _init(settings: ServerSettings, _args: argparse.Namespace) -> int:
    from jitstock.server.admin.initialise import initialise

    result = initialise(settings, REAL_CLOCK)
    if result.revision_before == result.revision_after:
        print(f"database: already at revision {result.revision_after}")
    else:
        print(
            f"database: migrated from {result.revision_before or 'empty'} "
            f"to {result.revision_after}"
        )
    if result.bootstrap_installed:
        print(
            "admin key from JITSTOCK_BOOTSTRAP_ADMIN_KEY installed (stored as a hash)"
        )
    if result.new_key is None:
        print(
            f"already initialised: {result.admin_keys} admin key(s) live; "
            "make more with `jitstock admin keys create NAME --role admin`"
        )
        return 0
    print(f"first admin key (id {result.new_key.id}, {result.new_key.name!r}):")
    print(f"  {result.new_key.key}")
    print("It is shown this once and stored only as a hash: keep it somewhere safe.")
    return 0


def _check(settings: ServerSettings, _args: argparse.Namespace) -> int:
    from jitstock.server.admin.check import run_checks

    lines = run_checks(settings, REAL_CLOCK)
    for line in lines:
        print(line.render(), flush=True)
    return 0 if all(x.ok for x in lines) else EXIT_FAILED


def _backup(settings: ServerSettings, args: argparse.Namespace) -> int:
    from jitstock.server.admin.backup import BackupError, backup

    try:
        for line in backup(settings, args.dest, history=not args.no_history):
            print(line)
    except BackupError as exc:
        sys.stderr.write(f"jitstock admin backup: {exc}\n")
        return EXIT_FAILED
    print(f"backup complete: {args.dest}")
    return 0


def _restore(settings: ServerSettings, args: argparse.Namespace) -> int:
    from jitstock.server.admin.backup import BackupError, restore

    try:
        for line in restore(
            settings,
            args.src,
            history=not args.no_history,
            replace_history=args.replace_history,
        ):
            print(line)
    except BackupError as exc:
        sys.stderr.write(f"jitstock admin restore: {exc}\n")
        return EXIT_FAILED
    print(f"restore complete from {args.src}")
    return 0


def _session_do(settings: ServerSettings, work: Callable[..., int]) -> int:
    """Run ``work(session, now_ms)`` in one transaction on a database at this release's head."""
    from jitstock.server.admin.accounts import AccountRefused
    from jitstock.server.admin.schema import check_schema
    from jitstock.server.db.migrate import head_revision
    from jitstock.server.db.session import (
        make_engine,
        make_session_factory,
        transaction,
    )

    revision = check_schema(settings.db_url)
    if revision != head_revision():
        sys.stderr.write(
            f"jitstock admin: the database is at {revision or 'no revision'}, "
            "not this release's: run `jitstock admin init` first\n"
        )
        return EXIT_FAILED
    engine = make_engine(settings.db_url)
    try:
        with transaction(make_session_factory(engine)) as s:
            return work(s, REAL_CLOCK.time_ms())
    except AccountRefused as exc:
        sys.stderr.write(f"jitstock admin: refused: {exc}\n")
        return EXIT_REFUSED
    finally:
        engine.dispose()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("jitstock admin: the passwords differ")
    return first


def _users(settings: ServerSettings, args: argparse.Namespace) -> int:
    from jitstock.server.admin import accounts

    def work(s: Session, now: int) -> int:
        if args.action == "list":
            print(f"{'user':<24} {'role':<8} {'state':<9} created")
            for u in accounts.list_users(s):
                state = "disabled" if u.disabled else "enabled"
                print(f"{u.username:<24} {u.role:<8} {state:<9} {_when(u.created_ms)}")
        elif args.action == "create":
            user = accounts.create_user(
                s, args.username, password, args.role, now_ms=now
            )
            print(f"user {user.username!r} created with role {user.role}")
        else:
            ended = accounts.set_disabled(
                s, args.username, args.action == "disable", now_ms=now
            )
            print(f"user {args.username!r} {args.action}d; {ended} session(s) ended")
        return 0

    try:
        password = (
            _read_password(args.password_stdin) if args.action == "create" else ""
        )
    except EOFError:  # no terminal and stdin ended: a script or a unit, not a person
        sys.stderr.write(
            "jitstock admin: refused: no password (input ended before it was typed "
            "twice); from a script, pipe it in with --password-stdin\n"
        )
        return EXIT_REFUSED
    return _session_do(settings, work)


def _keys(settings: ServerSettings, args: argparse.Namespace) -> int:
    from jitstock.server.admin import accounts

    def work(s: Session, now: int) -> int:
        if args.action == "list":
            print(f"{'id':>5} {'role':<8} {'state':<8} {'created':<16} name")
            for k in accounts.list_keys(s):
                state = (
                    "revoked"
                    if k.revoked
                    else "expired"
                    if k.expires_ms is not None and k.expires_ms <= now
                    else "live"
                )
                print(
                    f"{k.id:>5} {k.role:<8} {state:<8} {_when(k.created_ms):<16} {k.name}"
                )
        elif args.action == "create":
            new = accounts.create_key(s, args.name, args.role, now_ms=now)
            print(f"key {new.id} ({new.name!r}, {new.role}), shown this once:")
            print(f"  {new.key}")
        elif accounts.revoke_key(s, args.id, now_ms=now):
            print(f"key {args.id} revoked (and the browser sessions opened with it)")
        else:
            print(f"key {args.id} was already revoked")
        return 0

    return _session_do(settings, work)
