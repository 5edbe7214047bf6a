"""TLS to NATS and PostgreSQL, configured by settings and used by every connection, against real
servers: an embedded nats-server with a ``tls`` block, a private PostgreSQL cluster with
``ssl = on`` (started from this machine's PostgreSQL binaries) and the machine's own PostgreSQL
server when it has TLS switched on."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from guanhuai.embedded import NatsServer
from guanhuai.ops import masked_settings
from guanhuai.settings import Settings
from guanhuai.stack import connect
from shared.events.broker import build_app, ensure_streams
from shared.events.database import create_engine
from shared.events.store import EventStore
from shared.events.subjects import INBOUND_STREAM, inbound_subject
from shared.events.tls import nats_connection_uses_tls, pg_ssl_argument
from tests.support.postgres import PostgresCluster, unavailable
from tests.support.tls import Certificates, make_certificates

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


def test_sslmodes_mean_what_they_mean_in_libpq(certs: Certificates) -> None:
    assert pg_ssl_argument("disable") is False
    assert pg_ssl_argument("prefer") == "prefer"
    assert pg_ssl_argument(None) is None
    unverified = pg_ssl_argument("require")
    assert isinstance(unverified, ssl.SSLContext)
    assert unverified.verify_mode == ssl.CERT_NONE and not unverified.check_hostname
    for mode in ("require", "verify-ca"):  # with a root certificate, require checks the chain like verify-ca
        chain_only = pg_ssl_argument(mode, sslrootcert=certs.ca)
        assert isinstance(chain_only, ssl.SSLContext)
        assert chain_only.verify_mode == ssl.CERT_REQUIRED and not chain_only.check_hostname
    full = pg_ssl_argument("verify-full", sslrootcert=certs.ca)
    assert isinstance(full, ssl.SSLContext) and full.verify_mode == ssl.CERT_REQUIRED and full.check_hostname
    with pytest.raises(ValueError, match="both"):
        pg_ssl_argument("require", sslcert=certs.client_cert)
    with pytest.raises(ValueError, match="require or stronger"):
        pg_ssl_argument("prefer", sslcert=certs.client_cert, sslkey=certs.client_key)


# --- NATS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_nats(certs: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server that speaks TLS only and wants a client certificate signed by our CA."""
    config = (f'tls {{\n  cert_file: "{certs.server_cert}"\n  key_file: "{certs.server_key}"\n'
              f'  ca_file: "{certs.ca}"\n  verify: true\n  timeout: 2\n}}\n')
    with NatsServer(tmp_path_factory.mktemp("tls-nats"), config=config) as server:
        yield server.url


@pytest.fixture(scope="module")
def plain_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with NatsServer(tmp_path_factory.mktemp("plain-nats")) as server:
        yield server.url


def tls_settings(certs: Certificates, *, ca: Path | None = None, client: bool = True) -> Settings:
    return Settings(nats_tls_ca=ca or certs.ca, nats_tls_cert=certs.client_cert if client else None,
                    nats_tls_key=certs.client_key if client else None)


async def connect_once(url: str, tls: ssl.SSLContext | None):  # type: ignore[no-untyped-def]
    """One attempt, no reconnecting: what the server says to this client."""
    kwargs = {"tls": tls} if tls else {}
    return await asyncio.wait_for(nats.connect(url, allow_reconnect=False, connect_timeout=3, **kwargs), 20)


async def test_a_client_with_the_ca_and_its_certificate_publishes_and_consumes_through_jetstream(
        certs: Certificates, tls_nats: str) -> None:
    nc = await connect(tls_nats, tls_settings(certs).nats_tls_context())
    try:
        assert nats_connection_uses_tls(nc)
        js = nc.jetstream(timeout=10)
        await ensure_streams(js)
        body = f"household {uuid.uuid4()}".encode()
        subject = inbound_subject("county", "HouseholdRegistered")
        ack = await js.publish(subject, body, headers={"Nats-Msg-Id": uuid.uuid4().hex})
        assert ack.stream == INBOUND_STREAM
        sub = await js.pull_subscribe(subject, durable=f"tls-test-{uuid.uuid4().hex[:8]}", stream=INBOUND_STREAM)
        received = [m for m in await sub.fetch(100, timeout=5)]
        for m in received:
            await m.ack()
        assert body in [m.data for m in received]
    finally:
        await nc.close()


async def test_a_client_that_does_not_trust_the_servers_ca_is_refused(certs: Certificates, tls_nats: str) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_once(tls_nats, tls_settings(certs, ca=certs.other_ca).nats_tls_context())


async def test_a_client_without_tls_settings_cannot_connect_to_a_tls_server(tls_nats: str) -> None:
    """nats-py upgrades to TLS when the server asks, with the system's trust store, which does
    not know our CA."""
    assert Settings().nats_tls_context() is None
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_once(tls_nats, None)


async def test_a_client_without_a_certificate_is_refused_by_a_server_that_verifies_clients(
        certs: Certificates, tls_nats: str) -> None:
    # the server ends the handshake with "certificate required", or drops the connection first:
    # an SSLError or a ConnectionResetError, by timing
    with pytest.raises(OSError):
        nc = await connect_once(tls_nats, tls_settings(certs, client=False).nats_tls_context())
        await nc.close()


async def test_with_tls_configured_a_server_that_offers_no_tls_is_refused(certs: Certificates,
                                                                         plain_nats: str) -> None:
    with pytest.raises(ConnectionError, match="did not offer TLS"):
        await connect(plain_nats, tls_settings(certs).nats_tls_context())


async def test_a_service_app_declares_its_streams_over_tls(certs: Certificates, tls_nats: str,
                                                         tmp_path: Path) -> None:
    tls = tls_settings(certs).nats_tls_context()
    store = await EventStore.open(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    app, broker = build_app(tls_nats, store, [], name="tls-test", tls=tls)
    await app.start()
    try:
        assert nats_connection_uses_tls(broker.connection)
        info = await broker.connection.jetstream().stream_info(INBOUND_STREAM)
        assert info.config.name == INBOUND_STREAM
    finally:
        await app.stop()
        await store.close()


@pytest.mark.parametrize("service", ["enrollment", "subsidy", "claims", "reporting"])
async def test_each_service_built_from_settings_connects_to_nats_over_tls(
        service: str, certs: Certificates, tls_nats: str, tmp_path: Path) -> None:
    from importlib import import_module

    from guanhuai.serve import SERVICES

    settings = Settings(nats_url=tls_nats, nats_tls_ca=certs.ca, nats_tls_cert=certs.client_cert,
                        nats_tls_key=certs.client_key, db_url=f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    app = import_module(SERVICES[service]).create_app(settings)
    try:
        await asyncio.wait_for(app.start(), 20)
        assert nats_connection_uses_tls(app.broker.connection)
    finally:
        await asyncio.wait_for(app.stop(), 20)


async def test_a_service_app_with_tls_configured_refuses_a_plain_text_server(certs: Certificates, plain_nats: str,
                                                                           tmp_path: Path) -> None:
    store = await EventStore.open(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    app, _broker = build_app(plain_nats, store, [], name="tls-test", tls=tls_settings(certs).nats_tls_context())
    try:
        with pytest.raises(ConnectionError, match="did not offer TLS"):
            await app.start()
    finally:
        await app.stop()
        await store.close()


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


async def _session_ssl(url: str) -> tuple[bool, str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT ssl, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))).one()
            return bool(row[0]), str(row[1])
    finally:
        await engine.dispose()


@pytest.mark.parametrize("given_by", ["url query", "settings"])
async def test_an_engine_verifying_the_servers_certificate_talks_tls_to_postgresql(
        certs: Certificates, tls_postgres: PostgresCluster, given_by: str) -> None:
    if given_by == "url query":
        url = Settings(db_url=tls_postgres.url(host="localhost", query=f"sslmode=verify-full&sslrootcert={certs.ca}"))
    else:
        url = Settings(db_url=tls_postgres.url(host="localhost"), db_sslmode="verify-full", db_sslrootcert=certs.ca)
    assert await _session_ssl(url.database_url) == (True, "postgres")


async def test_the_event_log_opens_over_tls_with_sslmode_require(tls_postgres: PostgresCluster) -> None:
    store = await EventStore.open(Settings(db_url=tls_postgres.url(), db_sslmode="require").database_url)
    try:
        assert await store.head_position() == 0
    finally:
        await store.close()


async def test_a_postgresql_server_whose_certificate_another_ca_signed_is_refused(
        certs: Certificates, tls_postgres: PostgresCluster) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await _session_ssl(tls_postgres.url(query=f"sslmode=verify-ca&sslrootcert={certs.other_ca}"))


async def test_verify_full_refuses_a_host_name_the_certificate_does_not_carry(
        certs: Certificates, tls_postgres: PostgresCluster) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname|IP address mismatch"):
        await _session_ssl(tls_postgres.url(host="127.0.0.2", query=f"sslmode=verify-full&sslrootcert={certs.ca}"))


async def test_the_private_server_really_rejects_plain_text(tls_postgres: PostgresCluster) -> None:
    with pytest.raises(DBAPIError, match="pg_hba.conf rejects connection .* no encryption"):
        await _session_ssl(tls_postgres.url(query="sslmode=disable"))


async def test_a_client_certificate_logs_in_where_the_server_requires_one(
        certs: Certificates, tls_postgres: PostgresCluster) -> None:
    url = Settings(db_url=tls_postgres.url(user="guanhuai", host="localhost"), db_sslmode="verify-full",
                   db_sslrootcert=certs.ca, db_sslcert=certs.client_cert, db_sslkey=certs.client_key).database_url
    assert await _session_ssl(url) == (True, "guanhuai")
    with pytest.raises(DBAPIError, match="requires a valid client certificate"):
        await _session_ssl(tls_postgres.url(user="guanhuai", query=f"sslmode=verify-ca&sslrootcert={certs.ca}"))


async def test_an_engine_with_sslmode_require_talks_tls_to_the_machines_postgresql() -> None:
    from tests.conftest import PG_SERVER

    try:
        conn = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        pytest.skip(f"PostgreSQL at {PG_SERVER} is not available ({type(exc).__name__}: {exc})")
    try:
        setting = await conn.fetchval("SHOW ssl")
    finally:
        await conn.close()
    if setting != "on":
        pytest.skip(f"the PostgreSQL server at {PG_SERVER} has ssl = {setting} (no certificate configured), so "
                    "sslmode=require cannot connect to it; TLS to PostgreSQL is tested against this module's "
                    "private server instead")
    encrypted, _user = await _session_ssl(f"{PG_SERVER}/postgres?sslmode=require")
    assert encrypted
