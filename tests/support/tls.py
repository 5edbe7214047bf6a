"""Throwaway certificates for TLS tests, made with the ``openssl`` command: a CA, a server
certificate for ``localhost`` / ``127.0.0.1`` and a client certificate signed by it, and a second
CA that signed nothing of ours (the "wrong CA")."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", *KEY, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=guanhuai test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)


def _leaf(directory: Path, name: str, common_name: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions + "basicConstraints=CA:FALSE\n"
                                           "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl("req", "-new", *KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={common_name}",
             cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)


def make_certificates(directory: Path, client_name: str = "guanhuai") -> Certificates:
    """Write the certificates into ``directory`` (skips the test when ``openssl`` is missing)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _leaf(directory, "server", "localhost",
          "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _leaf(directory, "client", client_name, "extendedKeyUsage=clientAuth\n")
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return Certificates(ca=directory / "ca.pem", server_cert=directory / "server.pem",
                        server_key=directory / "server.key", client_cert=directory / "client.pem",
                        client_key=directory / "client.key", other_ca=directory / "other-ca.pem")


def nats_tls_block(certs: Certificates, *, handshake_first: bool = True, verify: bool = True) -> str:
    """A nats-server ``tls`` block with our server certificate; ``handshake_first``: TLS before
    the server's INFO (what guanhuai's clients require); ``verify``: clients need a certificate
    signed by our CA."""
    return (f'tls {{\n  cert_file: "{certs.server_cert}"\n  key_file: "{certs.server_key}"\n'
            f'  ca_file: "{certs.ca}"\n  verify: {str(verify).lower()}\n  timeout: 2\n'
            f'  handshake_first: {str(handshake_first).lower()}\n}}\n')
