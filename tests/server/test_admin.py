"""`jitstock admin` init, users and keys on SQLite and PostgreSQL, driven through the
command's own entry point; keys it prints are tried on a real API server."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from jitstock.cli import main
from jitstock.server.api import create_api
from jitstock.server.db.migrate import head_revision
from jitstock.server.db.models import AuditLog
from jitstock.server.db.session import make_engine
from tests.server.api.conftest import ApiServer, build_ctx
from tests.waits import WAIT_S

KEY = re.compile(r"^\s+(jsk_\S+)$", re.M)


@pytest.fixture
def admin_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """JITSTOCK_* for an admin command on an empty database; yields the URL."""
    for name in ("JITSTOCK_BOOTSTRAP_ADMIN_KEY", "JITSTOCK_INFLUX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JITSTOCK_DB_URL", db_url)
    monkeypatch.setenv("JITSTOCK_DATA_DIR", str(tmp_path / "data"))
    return db_url


def admin(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["admin", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def api_on(tmp_path: Path) -> Iterator[object]:
    """Start a real API server over a given database URL; stopped after the test."""
    started: list[tuple[ApiServer, object]] = []

    def start(db_url: str) -> str:
        d = tmp_path / f"api{len(started)}"
        d.mkdir()
        ctx = build_ctx(d, db_url)
        server = ApiServer(create_api(ctx))
        server.start()
        started.append((server, ctx))
        return server.url

    yield start
    for server, ctx in started:
        server.stop()
        ctx.tsdb.close()  # type: ignore[attr-defined]
        ctx.engine.dispose()  # type: ignore[attr-defined]


def test_init_migrates_and_prints_one_admin_key_that_opens_the_api(
    admin_env: str, capsys: pytest.CaptureFixture[str], api_on
) -> None:
    rc, out, err = admin(capsys, "init")
    assert rc == 0, err
    assert f"migrated from empty to {head_revision()}" in out
    keys = KEY.findall(out)
    assert len(keys) == 1
    # a second run changes nothing and shows no key
    rc, again, err = admin(capsys, "init")
    assert rc == 0, err
    assert "already initialised" in again
    assert KEY.findall(again) == []
    assert f"already at revision {head_revision()}" in again
    url = api_on(admin_env)
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        ok = http.get("/api/v1/keys", headers={"Authorization": f"Bearer {keys[0]}"})
        assert ok.status_code == 200
        assert [k["name"] for k in ok.json()] == ["admin (jitstock admin init)"]
        bad = http.get("/api/v1/keys", headers={"Authorization": "Bearer jsk_nope"})
        assert bad.status_code == 401


def test_keys_from_the_shell_work_on_the_api_and_die_when_revoked(
    admin_env: str, capsys: pytest.CaptureFixture[str], api_on
) -> None:
    assert admin(capsys, "init")[0] == 0
    rc, out, err = admin(capsys, "keys", "create", "line robot", "--role", "manager")
    assert rc == 0, err
    (key,) = KEY.findall(out)
    key_id = re.search(r"key (\d+)", out)
    assert key_id is not None
    url = api_on(admin_env)
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        assert http.get("/api/v1/bins", headers=auth).status_code == 200
        # a manager is not an admin
        assert http.get("/api/v1/keys", headers=auth).status_code == 403
        rc, out, _ = admin(capsys, "keys", "revoke", key_id.group(1))
        assert rc == 0
        assert "revoked" in out
        assert http.get("/api/v1/bins", headers=auth).status_code == 401
    rc, out, _ = admin(capsys, "keys", "revoke", key_id.group(1))
    assert (rc, "already revoked" in out) == (0, True)
    rc, listing, _ = admin(capsys, "keys", "list")
    assert re.search(rf"{key_id.group(1)} manager\s+revoked .* line robot", listing)
    # the shell's changes are in the audit trail like the API's
    engine = make_engine(admin_env)
    with engine.connect() as conn:
        actions = conn.execute(
            select(AuditLog.action, AuditLog.actor).order_by(AuditLog.id)
        ).all()
    engine.dispose()
    assert [a for a, _ in actions] == ["key.create", "key.create", "key.revoke"]
    assert all(actor.startswith("shell:") for _, actor in actions)


def test_users_from_the_shell_sign_in_until_disabled(
    admin_env: str,
    capsys: pytest.CaptureFixture[str],
    api_on,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    assert admin(capsys, "init")[0] == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    rc, out, err = admin(
        capsys, "users", "create", "alice", "--role", "manager", "--password-stdin"
    )
    assert (rc, err) == (0, "")
    url = api_on(admin_env)
    login = {"username": "alice", "password": "a long password", "session": "bearer"}
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        r = http.post("/api/v1/login", json=login)
        assert r.status_code == 200, r.text
        session_key = r.json()["key"]
        assert r.json()["role"] == "manager"
        rc, out, _ = admin(capsys, "users", "disable", "alice")
        assert rc == 0
        assert "1 session(s) ended" in out
        # the open session ends and a new sign-in is refused
        auth = {"Authorization": f"Bearer {session_key}"}
        assert http.get("/api/v1/bins", headers=auth).status_code == 401
        assert http.post("/api/v1/login", json=login).status_code == 401
        assert admin(capsys, "users", "enable", "alice")[0] == 0
        assert http.post("/api/v1/login", json=login).status_code == 200
    rc, listing, _ = admin(capsys, "users", "list")
    assert re.search(r"alice\s+manager\s+enabled", listing)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["users", "create", "bob", "--password-stdin"], "short\n", "at least 8"),
        (["users", "create", "", "--password-stdin"], "long enough pw\n", "username"),
        (
            ["users", "create", "x" * 10_000, "--password-stdin"],
            "long enough\n",
            "username",
        ),
        (
            ["users", "create", "bob\x00", "--password-stdin"],
            "long enough\n",
            "username",
        ),
        (["users", "create", "bob", "--password-stdin"], "x" * 600 + "\n", "password"),
        (["users", "disable", "nobody"], "", "no user 'nobody'"),
        (["keys", "create", "", "--role", "admin"], "", "name"),
        (["keys", "create", "k" * 101], "", "name"),
        (["keys", "create", "line\nrobot"], "", "control characters"),
        (["keys", "revoke", "12345"], "", "no API key with id 12345"),
    ],
)
def test_bad_shell_input_is_refused_with_a_reason_and_changes_nothing(
    admin_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    stdin: str,
    message: str,
) -> None:
    import io

    assert admin(capsys, "init")[0] == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc, out, err = admin(capsys, *argv)
    assert rc == 2
    assert message in err
    assert "Traceback" not in out + err
    engine = make_engine(admin_env)
    with engine.connect() as conn:
        users = conn.execute(text("SELECT count(*) FROM dashboard_users")).scalar()
        keys = conn.execute(text("SELECT count(*) FROM api_keys")).scalar()
    engine.dispose()
    assert (users, keys) == (0, 1)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("stdin", ["", "only one line\n"])
def test_users_create_without_a_terminal_is_refused_not_a_traceback(
    admin_env: str, capsys: pytest.CaptureFixture[str], stdin: str
) -> None:
    """Run from a script or a unit (no terminal, stdin closed or one line short), the
    password prompt meets end of input: a one-line refusal, no user, no traceback."""
    assert admin(capsys, "init")[0] == 0
    proc = subprocess.run(
        [sys.executable, "-m", "jitstock.cli", "admin", "users", "create", "bob"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        start_new_session=True,  # no controlling terminal: getpass reads stdin
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "--password-stdin" in proc.stderr
    engine = make_engine(admin_env)
    with engine.connect() as conn:
        users = conn.execute(text("SELECT count(*) FROM dashboard_users")).scalar()
    engine.dispose()
    assert users == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("bad", ["0", "-1", str(2**63), str(2**64), "1e3", "nan", ""])
def test_key_ids_out_of_range_are_usage_errors(
    admin_env: str, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["admin", "keys", "revoke", bad])
    assert exc.value.code == 2
    assert "argument id" in capsys.readouterr().err


def test_a_database_from_a_newer_release_is_refused_readably(
    admin_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert admin(capsys, "init")[0] == 0
    engine = make_engine(admin_env)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    engine.dispose()
    for argv in (["init"], ["keys", "list"], ["backup", str(tmp_path / "b")]):
        rc, out, err = admin(capsys, *argv)
        assert rc == 2, argv
        assert "'0099_future'" in err
        assert "newer release" in err
        assert "Traceback" not in err
    # the server refuses it too, before touching it
    proc = subprocess.run(
        [sys.executable, "-m", "jitstock.cli", "server", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "newer release" in proc.stderr
    assert "Traceback" not in proc.stderr
    engine = make_engine(admin_env)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert version == "0099_future"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "argv", [["init"], ["keys", "list"], ["users", "list"], ["backup", "b"]]
)
def test_an_unreachable_database_is_one_line_not_a_traceback(
    admin_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    tmp_path: Path,
) -> None:
    from tests.services import free_port

    url = f"postgresql://nobody:secret-pw@127.0.0.1:{free_port()}/x"
    monkeypatch.setenv("JITSTOCK_DB_URL", url)
    monkeypatch.chdir(tmp_path)
    rc, out, err = admin(capsys, *argv)
    assert rc == 1
    assert "database:" in err
    assert "Connection refused" in err or "connection failed" in err
    assert "Traceback" not in err
    assert "secret-pw" not in out + err


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_init_with_a_configured_bootstrap_key_seeds_it_and_prints_none(
    admin_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    api_on,
) -> None:
    key = "jsk_" + "k7Qm2pX9vL4tR8wZ" * 3
    monkeypatch.setenv("JITSTOCK_BOOTSTRAP_ADMIN_KEY", key)
    rc, out, _ = admin(capsys, "init")
    assert rc == 0
    assert "JITSTOCK_BOOTSTRAP_ADMIN_KEY installed" in out
    assert KEY.findall(out) == []
    assert key not in out
    rc, again, _ = admin(capsys, "init")
    assert "installed" not in again
    assert "already initialised: 1 admin key(s)" in again
    url = api_on(admin_env)
    r = httpx.get(
        f"{url}/api/v1/keys", headers={"Authorization": f"Bearer {key}"}, timeout=WAIT_S
    )
    assert r.status_code == 200
