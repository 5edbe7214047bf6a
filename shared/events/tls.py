"""TLS for the two kinds of connection the system makes: to NATS and to PostgreSQL.

Every place that connects goes through these helpers, so one configuration means the same thing
everywhere:

* :func:`nats_tls_context` builds the client ``ssl.SSLContext`` for NATS (CA to trust, optional
  client certificate for servers that ``verify`` clients).
* :func:`connect_nats` is the one way every component connects to NATS, each with the private
  inbox prefix of its credential (:func:`inbox_prefix_for`). With a TLS context it
  starts TLS before reading a byte from the server (``tls_handshake_first``; the servers need
  ``handshake_first: true`` in their ``tls`` block), on the first connection and on every
  reconnection, also to cluster addresses the server tells the client about. Without that,
  nats-py upgrades to TLS only when the server's INFO says ``tls_required`` and would otherwise
  send CONNECT (credentials included) and everything after it in plain text.
* :func:`pg_ssl_connect_args` reads libpq-style ``sslmode`` / ``sslrootcert`` / ``sslcert`` /
  ``sslkey`` from a PostgreSQL URL's query, removes them and returns asyncpg's ``ssl`` connect
  argument (an ``ssl.SSLContext`` for ``require`` and stronger) with libpq's meaning of each mode.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from os import PathLike
from typing import Any
from urllib.parse import unquote, urlsplit

import nats
from nats.aio.client import Client as NatsClient
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


NOT_TLS_FIRST = ("NATS TLS is configured but the server at {server} did not start TLS: refusing to talk plain text "
                 "(give its tls block handshake_first: true, or unset GUANHUAI_NATS_TLS_*)")

DEFAULT_INBOX_PREFIX = "_INBOX"


def inbox_prefix_for(servers: str | Sequence[str]) -> str:
    """The private inbox prefix of the credential in the (first) server URL: ``_INBOX_<user>`` for
    ``nats://<user>:<password>@host``, else nats' shared ``_INBOX`` (no credential: a development
    server without accounts). Replies to a client (JetStream's PubAcks, a pull consumer's
    deliveries) go to its inbox; with the shared prefix any user allowed ``_INBOX.>`` reads them.
    infra/nats/permissions.conf lets each user subscribe to its own ``_INBOX_<user>.>`` only."""
    first = servers if isinstance(servers, str) else (list(servers) or [""])[0]
    parsed = urlsplit(first.split(",")[0].strip() if "://" in first else f"nats://{first}")
    if parsed.username and parsed.password is not None:  # a user alone in the URL is a token
        return f"{DEFAULT_INBOX_PREFIX}_{unquote(parsed.username)}"
    return DEFAULT_INBOX_PREFIX


Callback = Callable[[], Awaitable[None]]
ErrorCallback = Callable[[Exception], Awaitable[None]]


async def connect_nats(servers: str | Sequence[str], tls: ssl.SSLContext | None = None, *,
                       reconnected_cb: Callback | None = None, error_cb: ErrorCallback | None = None,
                       **options: Any) -> NatsClient:
    """Connect to NATS (``options``: those of ``nats.connect``), and with ``tls`` never in plain text.

    With ``tls``, every connection and reconnection starts with the TLS handshake, before the
    server's INFO, so nothing (neither CONNECT with its credentials nor any message) is sent to
    a server that does not speak TLS first. On the first connection a failed TLS handshake (such
    a server, a certificate that fails verification) ends the attempt with an error instead of
    being retried (a configuration mistake, not an outage: ``ConnectionError`` for a server that
    does not start TLS, the ``ssl`` error otherwise; an unreachable server is retried as
    ``options`` say); later, while reconnecting, such a server is skipped and reported through
    ``error_cb`` like any unreachable one. A connection found without TLS anyway is refused: on
    the first connection with ``ConnectionError``, on a reconnection by closing the client."""
    servers = servers if isinstance(servers, str) else list(servers)
    # Every client of ours uses its credential's private inbox. FastStream always passes nats'
    # default prefix, so the default counts as not chosen; any other prefix given is kept.
    given = options.pop("inbox_prefix", None)
    given = given.decode() if isinstance(given, bytes) else given
    options["inbox_prefix"] = given if given and given != DEFAULT_INBOX_PREFIX else inbox_prefix_for(servers)
    if tls is None:
        return await nats.connect(servers, reconnected_cb=reconnected_cb, error_cb=error_cb, **options)
    options.pop("tls_handshake_first", None)
    nc = NatsClient()
    connected = False

    async def on_error(exc: Exception) -> None:
        # On the first connection nats-py would retry a failed handshake by waiting for the
        # closing of a socket that start_tls has taken over, forever: a TLS error ends it here.
        if not connected and isinstance(exc, ssl.SSLError):
            if getattr(exc, "reason", None) == "WRONG_VERSION_NUMBER":  # it answered the handshake in plain text
                raise ConnectionError(NOT_TLS_FIRST.format(server=_server_name(nc))) from exc
            raise exc
        if error_cb is not None:
            await error_cb(exc)
        else:
            logging.getLogger("guanhuai.nats").warning("nats error: %r", exc)

    async def on_reconnected() -> None:
        if not nats_connection_uses_tls(nc):
            logging.getLogger("guanhuai.nats").error(NOT_TLS_FIRST.format(server=_server_name(nc)))
            await nc.close()
            return
        if reconnected_cb is not None:
            await reconnected_cb()

    # A failed handshake leaves nothing to close: start_tls closed the socket, and nats-py starts
    # its tasks only once connected.
    await nc.connect(servers, tls=tls, tls_handshake_first=True, reconnected_cb=on_reconnected,
                     error_cb=on_error, **options)
    if not nats_connection_uses_tls(nc):
        await nc.close()
        raise ConnectionError(NOT_TLS_FIRST.format(server=_server_name(nc)))
    connected = True
    return nc


def _server_name(nc: NatsClient) -> str:
    server = getattr(nc, "_current_server", None)
    uri = getattr(server, "uri", None)
    return f"{uri.hostname}:{uri.port}" if uri is not None else "?"


def pg_ssl_argument(sslmode: str | None = None, sslrootcert: StrPath | None = None, sslcert: StrPath | None = None,
                    sslkey: StrPath | None = None) -> ssl.SSLContext | str | bool | None:
    """asyncpg's ``ssl`` argument for libpq's settings, or ``None`` for asyncpg's default.

    ``disable``: no TLS. ``allow`` / ``prefer``: handed to asyncpg as is (TLS when the server
    offers it, nothing verified). ``require``: TLS or no connection; like libpq, the server's
    certificate is checked against ``sslrootcert`` when one is given and not checked otherwise.
    ``verify-ca``: the certificate must chain to ``sslrootcert`` (default: the system's trust
    store). ``verify-full``: that, and the host name must match. ``sslrootcert=system``: the
    system's trust store, and as in libpq 16 only with ``verify-full`` (the default then; a
    weaker mode is refused, since ``require`` would otherwise check nothing).
    ``sslcert`` + ``sslkey``: a client certificate (needs ``require`` or stronger)."""
    if sslmode is None:
        if not (sslrootcert or sslcert or sslkey):
            return None
        sslmode = "verify-full" if sslrootcert else "require"
    sslmode = sslmode.strip().lower()
    if sslmode not in PG_SSLMODES:
        raise ValueError(f"sslmode must be one of {', '.join(PG_SSLMODES)}, not {sslmode!r}")
    system = sslrootcert is not None and str(sslrootcert) == "system"
    if system and sslmode != "verify-full":
        raise ValueError(f'weak sslmode "{sslmode}" may not be used with sslrootcert=system (use "verify-full")')
    if sslmode == "disable":
        return False
    if sslmode in ("allow", "prefer"):
        if sslcert or sslkey:
            raise ValueError(f"sslmode={sslmode} with a client certificate: use sslmode=require or stronger")
        return sslmode
    ca = None if system or not sslrootcert else sslrootcert
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
