"""TLS for the two kinds of connection the system makes: to NATS and to PostgreSQL.

Every place that connects goes through these helpers, so one configuration means the same thing
everywhere:

* :func:`nats_tls_context` builds the client ``ssl.SSLContext`` for NATS (CA to trust, optional
  client certificate for servers that ``verify`` clients); :func:`require_nats_tls` refuses a
  connection that came up without TLS although TLS was configured (nats-py would otherwise
  talk plain text to a server that does not ask for TLS).
* :func:`pg_ssl_connect_args` reads libpq-style ``sslmode`` / ``sslrootcert`` / ``sslcert`` /
  ``sslkey`` from a PostgreSQL URL's query, removes them and returns asyncpg's ``ssl`` connect
  argument (an ``ssl.SSLContext`` for ``require`` and stronger) with libpq's meaning of each mode.
"""

from __future__ import annotations

import ssl
from os import PathLike
from typing import Any

from sqlalchemy.engine import URL

PG_SSL_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey")
PG_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

StrPath = str | PathLike[str]


def _client_context(ca_file: StrPath | None, cert_file: StrPath | None, key_file: StrPath | None,
                    *, what: str) -> ssl.SSLContext:
    if (cert_file is None) != (key_file is None):
        raise ValueError(f"{what}: a client certificate needs both the certificate and its key")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file))
    return context


def nats_tls_context(ca_file: StrPath | None = None, cert_file: StrPath | None = None,
                     key_file: StrPath | None = None, *, enabled: bool = False) -> ssl.SSLContext | None:
    """The client TLS context for NATS, or ``None`` when nothing asks for TLS.

    ``ca_file``: the CA that signed the servers' certificates (default: the system's trust store,
    when ``enabled``); ``cert_file`` + ``key_file``: our client certificate. Server names are
    checked against the certificate (so use the name or IP address the certificate carries)."""
    if not (enabled or ca_file or cert_file or key_file):
        return None
    return _client_context(ca_file, cert_file, key_file, what="NATS TLS")


def nats_connection_uses_tls(nc: Any) -> bool:
    """Whether a connected nats-py client talks TLS (the transport carries an SSL object)."""
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    return writer is not None and writer.get_extra_info("ssl_object") is not None


def require_nats_tls(nc: Any, context: ssl.SSLContext | None) -> None:
    """With TLS configured, refuse a connection that is not encrypted (closed by the caller)."""
    if context is not None and not nats_connection_uses_tls(nc):
        raise ConnectionError("NATS TLS is configured but the server did not offer TLS: refusing a plain-text "
                              "connection (give the server a tls block, or unset GUANHUAI_NATS_TLS_*)")


def pg_ssl_argument(sslmode: str | None = None, sslrootcert: StrPath | None = None, sslcert: StrPath | None = None,
                    sslkey: StrPath | None = None) -> ssl.SSLContext | str | bool | None:
    """asyncpg's ``ssl`` argument for libpq's settings, or ``None`` for asyncpg's default.

    ``disable``: no TLS. ``allow`` / ``prefer``: handed to asyncpg as is (TLS when the server
    offers it, nothing verified). ``require``: TLS or no connection; like libpq, the server's
    certificate is checked against ``sslrootcert`` when one is given and not checked otherwise.
    ``verify-ca``: the certificate must chain to ``sslrootcert`` (default: the system's trust
    store; ``system`` says so explicitly). ``verify-full``: that, and the host name must match.
    ``sslcert`` + ``sslkey``: a client certificate (needs ``require`` or stronger)."""
    if sslmode is None:
        if not (sslrootcert or sslcert or sslkey):
            return None
        sslmode = "verify-full" if sslrootcert else "require"
    sslmode = sslmode.strip().lower()
    if sslmode not in PG_SSLMODES:
        raise ValueError(f"sslmode must be one of {', '.join(PG_SSLMODES)}, not {sslmode!r}")
    if sslmode == "disable":
        return False
    if sslmode in ("allow", "prefer"):
        if sslcert or sslkey:
            raise ValueError(f"sslmode={sslmode} with a client certificate: use sslmode=require or stronger")
        return sslmode
    ca = None if sslrootcert in (None, "", "system") else sslrootcert
    context = _client_context(ca, sslcert or None, sslkey or None, what="PostgreSQL TLS")
    if sslmode == "require" and not ca:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif sslmode in ("require", "verify-ca"):
        context.check_hostname = False  # the chain is verified, the name is not
    return context


def pg_ssl_connect_args(url: URL) -> tuple[URL, dict[str, Any]]:
    """Take the libpq TLS parameters out of a PostgreSQL URL's query; return the URL without
    them and the connect arguments for asyncpg (empty when the URL has none)."""
    given = {k: url.query[k] for k in PG_SSL_PARAMS if k in url.query}
    if not given:
        return url, {}
    values = {k: (v[-1] if isinstance(v, tuple) else v) for k, v in given.items()}
    argument = pg_ssl_argument(**values)
    return url.difference_update_query(PG_SSL_PARAMS), ({} if argument is None else {"ssl": argument})
