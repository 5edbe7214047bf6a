"""TLS to NATS and PostgreSQL, configured by settings and used by every connection, against real
servers: embedded nats-servers with a ``tls`` block (``handshake_first``) and without one, a private PostgreSQL cluster with
``ssl = on`` (started from this machine's PostgreSQL binaries) and the machine's own PostgreSQL
server when it has TLS switched on."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import nats
import nats.js.errors
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from guanhuai.embedded import NatsServer
from guanhuai.ops import masked_settings
from shared.settings import Settings
from guanhuai.stack import connect
from shared.events.broker import build_app, ensure_streams
from shared.events.database import create_engine
from shared.events.store import EventStore
from shared.events.subjects import inbound_stream, inbound_subject
from shared.events.tls import connect_nats, pg_ssl_argument, tls_since
from tests.support.postgres import PostgresCluster, unavailable
from tests.support.tls import Certificates, make_certificates, nats_tls_block

# --- certificates and the settings that name them -------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def test_tls_settings_come_from_guanhuai_environment_variables(certs: Certificates,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUANHUAI_NATS_TLS_CA", str(certs.ca))
    monkeypatch.setenv("GUANHUAI_NATS_TLS_CERT", str(certs.client_cert))
    monkeypatch.setenv("GUANHUAI_NATS_TLS_KEY", str(certs.client_key))
    monkeypatch.setenv("GUANHUAI_DB_URL", "postgresql://postgres:hunter2@db.example/guanhuai")
    monkeypatch.setenv("GUANHUAI_DB_SSLMODE", "verify-full")
    monkeypatch.setenv("GUANHUAI_DB_SSLROOTCERT", str(certs.ca))
    settings = Settings()
    context = settings.nats_tls_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert settings.database_url == (f"postgresql://postgres:hunter2@db.example/guanhuai?sslmode=verify-full"
                                     f"&sslrootcert={str(certs.ca).replace('/', '%2F')}")


def test_without_tls_settings_nats_stays_plain_and_the_database_url_is_unchanged() -> None:
    settings = Settings(db_url="postgresql://postgres@db.example/guanhuai")
    assert settings.nats_tls_context() is None
    assert settings.database_url == "postgresql://postgres@db.example/guanhuai"


def test_what_the_database_url_says_about_tls_wins_over_the_settings() -> None:
    settings = Settings(db_url="postgresql://postgres@db.example/guanhuai?sslmode=disable", db_sslmode="require")
    assert settings.database_url == "postgresql://postgres@db.example/guanhuai?sslmode=disable"


def test_an_unknown_sslmode_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="verify-full"):
        Settings(db_sslmode="always")


def test_config_shows_the_tls_settings_and_still_masks_passwords(certs: Certificates) -> None:
    shown = masked_settings(Settings(db_url="postgresql://postgres:hunter2@db.example/guanhuai",
                                     db_sslmode="require", nats_tls_ca=certs.ca,
                                     nats_url="nats://county:s3cret@nats.example:4222"))
    assert shown["nats_tls_ca"] == str(certs.ca)
    assert shown["nats_tls_cert"] is None and shown["db_sslmode"] == "require"
    assert shown["database_url (effective)"] == "postgresql://postgres:***@db.example/guanhuai?sslmode=require"
    assert "hunter2" not in str(shown) and "s3cret" not in str(shown)


def test_the_tls_settings_are_spelled_out_for_libpq_as_documented() -> None:
    """libpq applies them (psycopg); what it would take by default is made explicit where that
    default would check less than the documentation says."""
    assert pg_ssl_argument(None) == {}
    assert pg_ssl_argument("disable") == {"sslmode": "disable"}
    assert pg_ssl_argument("prefer") == {"sslmode": "prefer"}
    assert pg_ssl_argument("require") == {"sslmode": "require"}
    # A CA file alone means verify-full (libpq would take prefer, which checks nothing and may fall
    # back to plain text); a client certificate alone means require.
    assert pg_ssl_argument(None, sslrootcert="/ca.pem") == {"sslmode": "verify-full", "sslrootcert": "/ca.pem"}
    assert pg_ssl_argument(None, sslcert="/c.pem", sslkey="/k.pem") == {"sslmode": "require", "sslcert": "/c.pem",
                                                                         "sslkey": "/k.pem"}
    # verify-full without a CA file: the system's trust store (libpq would want ~/.postgresql/root.crt).
    assert pg_ssl_argument("verify-full") == {"sslmode": "verify-full", "sslrootcert": "system"}
    assert pg_ssl_argument(" Verify-CA ", sslrootcert="/ca.pem") == {"sslmode": "verify-ca", "sslrootcert": "/ca.pem"}
    with pytest.raises(ValueError, match="verify-ca needs sslrootcert"):
        pg_ssl_argument("verify-ca")
    with pytest.raises(ValueError, match="one of"):
        pg_ssl_argument("always")
    with pytest.raises(ValueError, match="both"):
        pg_ssl_argument("require", sslcert="/c.pem")
    with pytest.raises(ValueError, match="require or stronger"):
        pg_ssl_argument("prefer", sslcert="/c.pem", sslkey="/k.pem")


def test_sslrootcert_system_is_refused_with_a_weak_sslmode() -> None:
    """As in libpq 16: ``sslrootcert=system`` means verify-full (its default mode then) and a
    weaker mode is an error, never "require" that checks nothing."""
    for mode in ("verify-full", None):
        assert pg_ssl_argument(mode, sslrootcert="system") == {"sslmode": "verify-full", "sslrootcert": "system"}
    for mode in ("require", "verify-ca", "prefer", "disable"):
        with pytest.raises(ValueError, match=f'weak sslmode "{mode}" may not be used with sslrootcert=system'):
            pg_ssl_argument(mode, sslrootcert="system")
    with pytest.raises(ValueError, match="sslrootcert=system"):
        create_engine("postgresql://postgres@db.example/guanhuai?sslmode=require&sslrootcert=system")


# --- NATS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_nats(certs: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server that speaks TLS only, from the first byte (``handshake_first``), and wants a
    client certificate signed by our CA."""
    with NatsServer(tmp_path_factory.mktemp("tls-nats"), config=nats_tls_block(certs)) as server:
        yield server.url


@pytest.fixture(scope="module")
def tls_nats_without_handshake_first(certs: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server with TLS that sends its INFO in plain text first and upgrades afterwards."""
    config = nats_tls_block(certs, handshake_first=False)
    with NatsServer(tmp_path_factory.mktemp("tls-late-nats"), config=config) as server:
        yield server.url


PLAIN_PASSWORD = "s3cret-never-in-plain-text"


@pytest.fixture
def traced_plain_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server without TLS that wants a password and logs every protocol line it receives."""
    config = f'trace: true\nauthorization {{ user: county, password: "{PLAIN_PASSWORD}" }}\n'
    with NatsServer(tmp_path / "plain-nats", config=config) as server:
        yield server


def with_password(url: str) -> str:
    return url.replace("nats://", f"nats://county:{PLAIN_PASSWORD}@")


def protocol_received(server: NatsServer) -> list[str]:
    """The protocol operations the server traced as received from clients (``<<- [CONNECT ...]``)."""
    return [line for line in server.log_file.read_text().splitlines() if "<<- [" in line]


@pytest.fixture(scope="module")
def plain_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with NatsServer(tmp_path_factory.mktemp("plain-nats")) as server:
        yield server.url


def tls_settings(certs: Certificates, *, ca: Path | None = None, client: bool = True) -> Settings:
    return Settings(nats_tls_ca=ca or certs.ca, nats_tls_cert=certs.client_cert if client else None,
                    nats_tls_key=certs.client_key if client else None)


async def connect_once(url: str, tls: ssl.SSLContext | None):  # type: ignore[no-untyped-def]
    """One attempt, no reconnecting, through the connection every component uses: what the
    server says to this client."""
    return await asyncio.wait_for(connect_nats(url, tls, allow_reconnect=False, connect_timeout=3), 20)


async def test_a_client_with_the_ca_and_its_certificate_publishes_and_consumes_through_jetstream(
        certs: Certificates, tls_nats: str) -> None:
    context = tls_settings(certs).nats_tls_context()
    nc = await connect(tls_nats, context)
    try:
        assert tls_since(context, ()) and context.sessions[-1].version() in ("TLSv1.2", "TLSv1.3")
        assert not tls_since(context, context.sessions)  # no new session since: a plain reconnection would be refused
        js = nc.jetstream(timeout=10)
        await ensure_streams(js)
        body = f"household {uuid.uuid4()}".encode()
        subject = inbound_subject("county", "HouseholdRegistered")
        ack = await js.publish(subject, body, headers={"Nats-Msg-Id": uuid.uuid4().hex})
        assert ack.stream == inbound_stream("county")
        sub = await js.pull_subscribe(subject, durable=f"tls-test-{uuid.uuid4().hex[:8]}", stream=inbound_stream("county"))
        received = [m for m in await sub.fetch(100, timeout=5)]
        for m in received:
            await m.ack()
        assert body in [m.data for m in received]
    finally:
        await nc.close()


async def test_a_client_that_does_not_trust_the_servers_ca_is_refused(certs: Certificates, tls_nats: str) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_once(tls_nats, tls_settings(certs, ca=certs.other_ca).nats_tls_context())


async def test_a_client_without_tls_settings_cannot_connect_to_a_tls_server(
        tls_nats: str, tls_nats_without_handshake_first: str) -> None:
    """A server with ``handshake_first`` says nothing until a TLS handshake that a plain client
    never starts, and hangs up after its TLS timeout; one that sends its INFO first gets a
    client that upgrades with the system's trust store, which does not know our CA."""
    assert Settings().nats_tls_context() is None
    with pytest.raises((nats.errors.Error, OSError, asyncio.TimeoutError)):
        await connect_once(tls_nats, None)
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_once(tls_nats_without_handshake_first, None)


async def test_a_client_without_a_certificate_is_refused_by_a_server_that_verifies_clients(
        certs: Certificates, tls_nats: str) -> None:
    # the server ends the handshake with "certificate required", or drops the connection first:
    # an SSLError or a ConnectionResetError, by timing
    with pytest.raises(OSError):
        nc = await connect_once(tls_nats, tls_settings(certs, client=False).nats_tls_context())
        await nc.close()


async def test_with_tls_configured_a_server_that_offers_no_tls_is_refused_before_anything_is_sent(
        certs: Certificates, traced_plain_nats: NatsServer) -> None:
    """The client starts with the TLS handshake, so the server sees a ClientHello, never CONNECT
    with the password in the URL (the command line's connection retries forever on an outage,
    but not on this)."""
    with pytest.raises(ConnectionError, match="did not start TLS"):
        await asyncio.wait_for(connect(with_password(traced_plain_nats.url), tls_settings(certs).nats_tls_context()),
                               20)
    # the server did get our TLS handshake, and took it for nothing it knows (its log is written
    # a moment after it answers)
    for _ in range(50):
        log = traced_plain_nats.log_file.read_text()
        if "->> [-ERR" in log:
            break
        await asyncio.sleep(0.1)
    assert "->> [-ERR" in log
    assert protocol_received(traced_plain_nats) == [] and PLAIN_PASSWORD not in log


async def test_with_tls_configured_a_tls_server_that_sends_its_info_before_the_handshake_is_refused(
        certs: Certificates, tls_nats_without_handshake_first: str) -> None:
    """Without ``handshake_first`` on the server, the client could not know that TLS will follow
    its INFO: it starts TLS at once and never reads that INFO in plain text. The plain INFO
    breaks the handshake ("did not start TLS"), or, when it arrived before the handshake began,
    the handshake times out waiting for a reply: refused either way."""
    with pytest.raises((ConnectionError, TimeoutError)) as refused:
        await connect_once(tls_nats_without_handshake_first, tls_settings(certs).nats_tls_context())
    assert isinstance(refused.value, TimeoutError) or "handshake_first: true" in str(refused.value)


async def test_a_client_whose_tls_server_is_replaced_by_a_plain_text_one_sends_it_nothing_and_waits_for_tls(
        certs: Certificates, tmp_path: Path) -> None:
    """Reconnecting, like connecting, starts with TLS: a plain-text server at the same address
    gets no CONNECT and no message; what was published meanwhile waits and goes out once a TLS
    server is back."""
    tls_server = NatsServer(tmp_path / "tls", config=nats_tls_block(certs)).start()
    plain_server: NatsServer | None = None
    context = tls_settings(certs).nats_tls_context()
    nc = await connect(tls_server.url, context)
    try:
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(msg):  # type: ignore[no-untyped-def]
            await received.put(msg.data)

        await nc.subscribe("tls.reconnect", cb=on_message)
        await nc.flush()
        tls_server.stop()
        plain_server = NatsServer(tmp_path / "plain", port=tls_server.port,
                                  config=f'trace: true\nauthorization {{ user: county, password: "{PLAIN_PASSWORD}" }}\n'
                                  ).start()
        for _ in range(100):  # published before the client notices, it would go down the dead socket
            if nc.is_reconnecting:
                break
            await asyncio.sleep(0.1)
        await nc.publish("tls.reconnect", b"published while the server was plain text")
        await asyncio.sleep(3)  # reconnect_time_wait is 0.5 s: several attempts
        assert not nc.is_connected
        assert protocol_received(plain_server) == []
        assert "->> [-ERR" in plain_server.log_file.read_text()  # attempts did reach it

        plain_server.stop()
        plain_server = None
        tls_server = NatsServer(tmp_path / "tls", port=tls_server.port, config=nats_tls_block(certs)).start()
        assert await asyncio.wait_for(received.get(), 20) == b"published while the server was plain text"
        assert nc.is_connected and tls_since(context, ()) and context.sessions[-1].version() is not None
    finally:
        await nc.close()
        if plain_server is not None:
            plain_server.stop()
        tls_server.stop()


async def test_a_service_app_declares_its_streams_over_tls(certs: Certificates, tls_nats: str,
                                                         tmp_path: Path) -> None:
    tls = tls_settings(certs).nats_tls_context()
    store = await EventStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    app, broker = build_app(tls_nats, store, [], name="tls-test", tls=tls)
    await app.start()
    try:
        assert broker.connection.is_connected and tls_since(tls, ())
        info = await broker.connection.jetstream().stream_info(inbound_stream("county"))
        assert info.config.name == inbound_stream("county")
    finally:
        await app.stop()
        await store.close()


@pytest.mark.parametrize("service", ["enrollment", "subsidy", "claims", "reporting"])
async def test_each_service_built_from_settings_connects_to_nats_over_tls(
        service: str, certs: Certificates, tls_nats: str, tmp_path: Path) -> None:
    from importlib import import_module

    from guanhuai.serve import SERVICES

    settings = Settings(nats_url=tls_nats, nats_tls_ca=certs.ca, nats_tls_cert=certs.client_cert,
                        nats_tls_key=certs.client_key, db_url=f"sqlite:///{tmp_path / 'log.db'}")
    app = import_module(SERVICES[service]).create_app(settings)
    try:
        await asyncio.wait_for(app.start(), 20)
        assert app.broker.connection.is_connected  # to a server that speaks nothing but TLS (tls_nats)
    finally:
        await asyncio.wait_for(app.stop(), 20)


async def test_a_service_app_with_tls_configured_refuses_a_plain_text_server(certs: Certificates, plain_nats: str,
                                                                           tmp_path: Path) -> None:
    store = await EventStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    app, broker = build_app(plain_nats, store, [], name="tls-test", tls=tls_settings(certs).nats_tls_context())
    try:
        with pytest.raises(ConnectionError, match="did not start TLS"):
            await asyncio.wait_for(app.start(), 20)
        assert broker._connection is None  # nothing left connected
    finally:
        await app.stop()
        await store.close()
    plain = await nats.connect(plain_nats)
    try:  # and it declared nothing there in plain text
        with pytest.raises(nats.js.errors.NotFoundError):
            await plain.jetstream().stream_info(inbound_stream("county"))
    finally:
        await plain.close()


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_postgres(certs: Certificates) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this module's own: TLS with our server certificate; plain-text
    connections are rejected; user ``guanhuai`` logs in only with a client certificate."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"!!! PostgreSQL TLS NOT TESTED: {reason}")
    tls = {"ssl": "on", "ssl_cert_file": certs.server_cert.name, "ssl_key_file": certs.server_key.name,
           "ssl_ca_file": certs.ca.name}
    cluster = PostgresCluster(settings={"listen_addresses": "127.0.0.1,127.0.0.2", **tls},
                              files=[certs.server_cert, certs.server_key, certs.ca],
                              hba=["hostssl all guanhuai 127.0.0.0/8 cert",
                                   "hostssl all postgres 127.0.0.0/8 trust",
                                   "hostnossl all all 127.0.0.0/8 reject"])
    with cluster:
        cluster.sql("CREATE ROLE guanhuai LOGIN")
        yield cluster


def _session_ssl(url: str) -> tuple[bool, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT ssl, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).one()
            return bool(row[0]), str(row[1])
    finally:
        engine.dispose()


# libpq's words (through psycopg) for a server certificate it does not trust.
UNTRUSTED = "certificate verify failed"


@pytest.mark.parametrize("given_by", ["url query", "settings"])
def test_an_engine_verifying_the_servers_certificate_talks_tls_to_postgresql(
        certs: Certificates, tls_postgres: PostgresCluster, given_by: str) -> None:
    if given_by == "url query":
        url = Settings(db_url=tls_postgres.url(host="localhost", query=f"sslmode=verify-full&sslrootcert={certs.ca}"))
    else:
        url = Settings(db_url=tls_postgres.url(host="localhost"), db_sslmode="verify-full", db_sslrootcert=certs.ca)
    assert _session_ssl(url.database_url) == (True, "postgres")


async def test_the_event_log_opens_over_tls_with_sslmode_require(tls_postgres: PostgresCluster) -> None:
    store = await EventStore.open(Settings(db_url=tls_postgres.url(), db_sslmode="require").database_url)
    try:
        assert await store.head_position() == 0
    finally:
        await store.close()


def test_a_postgresql_server_whose_certificate_another_ca_signed_is_refused(
        certs: Certificates, tls_postgres: PostgresCluster) -> None:
    for mode in ("verify-ca", "require"):  # with a CA file, require checks the chain as verify-ca does
        with pytest.raises(DBAPIError, match=UNTRUSTED):
            _session_ssl(tls_postgres.url(query=f"sslmode={mode}&sslrootcert={certs.other_ca}"))


def test_sslrootcert_system_checks_the_servers_certificate_against_the_system_trust_store(
        tls_postgres: PostgresCluster) -> None:
    """Our test CA is not in the system's trust store: the server is refused, where
    ``require`` used to connect without checking anything."""
    with pytest.raises(DBAPIError, match=UNTRUSTED):
        _session_ssl(tls_postgres.url(host="localhost", query="sslrootcert=system"))
    with pytest.raises(DBAPIError, match=UNTRUSTED):
        _session_ssl(Settings(db_url=tls_postgres.url(host="localhost"), db_sslmode="verify-full",
                              db_sslrootcert=Path("system")).database_url)


def test_verify_full_refuses_a_host_name_the_certificate_does_not_carry(
        certs: Certificates, tls_postgres: PostgresCluster) -> None:
    with pytest.raises(DBAPIError, match='does not match host name "127.0.0.2"'):
        _session_ssl(tls_postgres.url(host="127.0.0.2", query=f"sslmode=verify-full&sslrootcert={certs.ca}"))
    # verify-ca checks the chain, not the name
    assert _session_ssl(tls_postgres.url(host="127.0.0.2", query=f"sslmode=verify-ca&sslrootcert={certs.ca}"))[0]


def test_the_private_server_really_rejects_plain_text(tls_postgres: PostgresCluster) -> None:
    with pytest.raises(DBAPIError, match="pg_hba.conf rejects connection .* no encryption"):
        _session_ssl(tls_postgres.url(query="sslmode=disable"))


def test_a_client_certificate_logs_in_where_the_server_requires_one(
        certs: Certificates, tls_postgres: PostgresCluster) -> None:
    url = Settings(db_url=tls_postgres.url(user="guanhuai", host="localhost"), db_sslmode="verify-full",
                   db_sslrootcert=certs.ca, db_sslcert=certs.client_cert, db_sslkey=certs.client_key).database_url
    assert _session_ssl(url) == (True, "guanhuai")
    with pytest.raises(DBAPIError, match="requires a valid client certificate"):
        _session_ssl(tls_postgres.url(user="guanhuai", query=f"sslmode=verify-ca&sslrootcert={certs.ca}"))


def test_an_engine_with_sslmode_require_talks_tls_to_the_machines_postgresql() -> None:
    from tests.conftest import PG_SERVER

    try:
        with psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=5) as conn:
            setting = conn.execute("SHOW ssl").fetchone()[0]  # type: ignore[index]
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        pytest.skip(f"PostgreSQL at {PG_SERVER} is not available ({type(exc).__name__}: {exc})")
    if setting != "on":
        pytest.skip(f"the PostgreSQL server at {PG_SERVER} has ssl = {setting} (no certificate configured), so "
                    "sslmode=require cannot connect to it; TLS to PostgreSQL is tested against this module's "
                    "private server instead")
    encrypted, _user = _session_ssl(f"{PG_SERVER}/postgres?sslmode=require")
    assert encrypted


def test_settings_that_name_only_a_ca_file_or_verify_full_still_verify_the_server(
        certs: Certificates, tls_postgres: PostgresCluster) -> None:
    """``sslrootcert`` without ``sslmode`` means verify-full, as documented: libpq by itself would
    take ``prefer``, and talk plain text to a server that offers no TLS (the machine's server, here,
    when its ``ssl`` is off). And verify-full without a CA file checks against the system's trust
    store (which does not hold our test CA), as documented, not against ``~/.postgresql/root.crt``."""
    from tests.conftest import PG_SERVER

    try:
        with psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=5) as conn:
            plain_server = conn.execute("SHOW ssl").fetchone()[0] == "off"  # type: ignore[index]
    except Exception:  # noqa: BLE001 - no such server: that half is not tested
        plain_server = False
    if plain_server:
        with pytest.raises(DBAPIError, match="server does not support SSL"):
            _session_ssl(f"{PG_SERVER}/postgres?sslrootcert={certs.ca}")
    with pytest.raises(DBAPIError, match=UNTRUSTED):
        _session_ssl(Settings(db_url=tls_postgres.url(host="localhost"), db_sslmode="verify-full").database_url)
    assert _session_ssl(tls_postgres.url(host="localhost", query=f"sslrootcert={certs.ca}")) == (True, "postgres")
