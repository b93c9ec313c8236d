"""A private PKI made with openssl for TLS tests: a CA, a server certificate it signed
(127.0.0.1 and localhost), and an unrelated CA (the ``pki`` fixture, tests/server/conftest.py)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.services import find_binary


@dataclass(frozen=True)
class Pki:
    ca: Path  # signed the broker's certificate
    wrong_ca: Path  # an unrelated CA
    server_cert: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    openssl = find_binary("openssl", "/usr/bin/openssl")
    done = subprocess.run(
        [openssl, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


def _make_ca(d: Path, name: str) -> Path:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
        "-subj", f"/CN=jitstock test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    return d / f"{name}.crt"


def make_pki(d: Path) -> Pki:
    """A private CA, a server certificate it signed (127.0.0.1 and localhost), a wrong CA."""
    ca = _make_ca(d, "ca")
    wrong = _make_ca(d, "wrong-ca")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=localhost",
        cwd=d,
    )  # fmt: skip
    (d / "broker.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", "2", "-days", "2", "-extfile", "broker.ext", "-out", "broker.crt",
        cwd=d,
    )  # fmt: skip
    return Pki(ca, wrong, d / "broker.crt", d / "broker.key")
