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
* :func:`pg_ssl_argument` spells out libpq's ``sslmode`` / ``sslrootcert`` / ``sslcert`` /
  ``sslkey`` of a PostgreSQL URL as guanhuai documents them, and refuses the combinations that
  would check nothing; libpq itself (through psycopg) then applies them.
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

PG_SSL_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey")
PG_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

StrPath = str | PathLike[str]


def _client_context(ca_file: StrPath | None, cert_file: StrPath | None, key_file: StrPath | None,
                    *, what: str) -> ssl.SSLContext:
    if (cert_file is None) != (key_file is None):
        raise ValueError(f"{what}: a client certificate needs both the certificate and its key")
    context = TrackedTLSContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    if ca_file:
        context.load_verify_locations(cafile=str(ca_file))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
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


class TrackedTLSContext(ssl.SSLContext):
    """A client TLS context that keeps the TLS sessions it makes (asyncio makes each through the
    standard library's public ``wrap_bio``), so that the client holding it can tell, once it has
    (re)connected, that a new TLS session completed its handshake: nats-py has no public way to
    say whether its transport is TLS. (A context shared by several clients counts theirs too.)"""

    sessions: tuple[ssl.SSLObject, ...] = ()

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        made = super().wrap_bio(*args, **kwargs)
        self.sessions = (*self.sessions[-7:], made)
        return made


def sessions_of(context: ssl.SSLContext | None) -> tuple[ssl.SSLObject, ...]:
    return context.sessions if isinstance(context, TrackedTLSContext) else ()


def tls_since(context: ssl.SSLContext | None, before: tuple[ssl.SSLObject, ...]) -> bool:
    """Whether the connection made with ``context`` since it held the sessions ``before`` talks TLS:
    a new session that finished its handshake. A context of another kind cannot tell, and is taken
    at nats-py's word (its ``tls_handshake_first`` starts TLS before anything else or fails)."""
    if not isinstance(context, TrackedTLSContext):
        return True
    return bool(context.sessions) and context.sessions[-1] not in before and context.sessions[-1].version() is not None


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
    seen = sessions_of(tls)

    async def on_error(exc: Exception) -> None:
        # On the first connection nats-py would retry a failed handshake by waiting for the
        # closing of a socket that start_tls has taken over, forever: a TLS error ends it here.
        if not connected and isinstance(exc, ssl.SSLError):
            if getattr(exc, "reason", None) == "WRONG_VERSION_NUMBER":  # it answered the handshake in plain text
                raise ConnectionError(NOT_TLS_FIRST.format(server=_server_name(nc, servers))) from exc
            raise exc
        if error_cb is not None:
            await error_cb(exc)
        else:
            logging.getLogger("guanhuai.nats").warning("nats error: %r", exc)

    async def on_reconnected() -> None:
        nonlocal seen
        if not tls_since(tls, seen):
            logging.getLogger("guanhuai.nats").error(NOT_TLS_FIRST.format(server=_server_name(nc, servers)))
            await nc.close()
            return
        seen = sessions_of(tls)
        if reconnected_cb is not None:
            await reconnected_cb()

    # A failed handshake leaves nothing to close: start_tls closed the socket, and nats-py starts
    # its tasks only once connected.
    await nc.connect(servers, tls=tls, tls_handshake_first=True, reconnected_cb=on_reconnected,
                     error_cb=on_error, **options)
    if not tls_since(tls, seen):
        await nc.close()
        raise ConnectionError(NOT_TLS_FIRST.format(server=_server_name(nc, servers)))
    seen = sessions_of(tls)
    connected = True
    return nc


def _server_name(nc: NatsClient, servers: str | Sequence[str]) -> str:
    uri = nc.connected_url
    if uri is not None:
        return f"{uri.hostname}:{uri.port}"
    first = servers if isinstance(servers, str) else (list(servers) or ["?"])[0]
    return first.split(",")[0].rpartition("@")[-1]


def pg_ssl_argument(sslmode: str | None = None, sslrootcert: StrPath | None = None, sslcert: StrPath | None = None,
                    sslkey: StrPath | None = None) -> dict[str, str]:
    """libpq's TLS parameters for these settings, spelled out so that they mean what guanhuai
    documents; empty when none is given (libpq's default, ``prefer``). libpq (psycopg) applies
    them itself; this refuses, before any connection, the combinations that would check nothing.

    No ``sslmode``: ``verify-full`` with ``sslrootcert``, else ``require`` with a client
    certificate (libpq would take ``prefer``, which falls back to plain text). ``require`` with
    ``sslrootcert`` checks the chain as ``verify-ca`` does (libpq's own rule). ``verify-full``
    without ``sslrootcert``: the system's trust store (``sslrootcert=system``; libpq would look
    for ``~/.postgresql/root.crt``). ``verify-ca`` needs ``sslrootcert`` (a CA file): libpq checks
    a chain against the system's store only with ``verify-full``. ``sslrootcert=system``: as in
    libpq 16, only with ``verify-full`` (a weaker mode is refused, since ``require`` would
    otherwise check nothing). ``sslcert`` + ``sslkey``: a client certificate (both, and
    ``require`` or stronger)."""
    if sslmode is None:
        if not (sslrootcert or sslcert or sslkey):
            return {}
        sslmode = "verify-full" if sslrootcert else "require"
    sslmode = sslmode.strip().lower()
    if sslmode not in PG_SSLMODES:
        raise ValueError(f"sslmode must be one of {', '.join(PG_SSLMODES)}, not {sslmode!r}")
    system = sslrootcert is not None and str(sslrootcert) == "system"
    if system and sslmode != "verify-full":
        raise ValueError(f'weak sslmode "{sslmode}" may not be used with sslrootcert=system (use "verify-full")')
    if sslmode == "disable":
        return {"sslmode": sslmode}
    if (sslcert or sslkey) and not (sslcert and sslkey):
        raise ValueError("PostgreSQL TLS: a client certificate needs both the certificate and its key")
    if sslcert and sslmode in ("allow", "prefer"):
        raise ValueError(f"sslmode={sslmode} with a client certificate: use sslmode=require or stronger")
    if sslmode == "verify-ca" and not sslrootcert:
        raise ValueError("sslmode=verify-ca needs sslrootcert (the CA file that signed the server's certificate); "
                         'for the system\'s trust store use "verify-full"')
    if sslmode == "verify-full" and not sslrootcert:
        sslrootcert = "system"
    given = {"sslmode": sslmode, "sslrootcert": sslrootcert, "sslcert": sslcert, "sslkey": sslkey}
    return {k: str(v) for k, v in given.items() if v}
