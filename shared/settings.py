"""Settings from environment variables (``GUANHUAI_*``) and an optional ``guanhuai.env`` file."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from shared.events.tls import PG_SSLMODES, inbox_prefix_for, nats_tls_context


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUANHUAI_", env_file="guanhuai.env", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="where embedded parts keep their files")
    db_url: str | None = Field(default=None, description="event log database; default: SQLite in data_dir")
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server(s), comma-separated for a cluster")
    nats_replicas: int = Field(default=1, ge=1, le=5, description="JetStream stream replicas (3 on a cluster)")
    nats_tls: bool = Field(default=False, description="talk TLS to NATS even without nats_tls_ca (system trust store)")
    nats_tls_ca: Path | None = Field(default=None, description="CA file (PEM) that signed the NATS servers' certificates; setting it turns TLS on")
    nats_tls_cert: Path | None = Field(default=None, description="client certificate (PEM) for NATS servers that verify clients")
    nats_tls_key: Path | None = Field(default=None, description="the client certificate's private key (PEM)")
    db_sslmode: str | None = Field(default=None, description="PostgreSQL sslmode (libpq): disable, allow, prefer, require, verify-ca, verify-full")
    db_sslrootcert: Path | None = Field(default=None, description="CA file (PEM) for the PostgreSQL server's certificate")
    db_sslcert: Path | None = Field(default=None, description="client certificate (PEM) for PostgreSQL")
    db_sslkey: Path | None = Field(default=None, description="the PostgreSQL client certificate's private key (PEM)")
    log_level: str = Field(default="INFO")
    api_host: str = Field(default="127.0.0.1", description="where the reporting HTTP API listens")
    api_port: int = Field(default=8640)
    api_token: str | None = Field(default=None, description="when set, the HTTP API requires Authorization: Bearer <token>; without it the API listens on loopback only")
    api_tokens_file: Path | None = Field(default=None, description="scoped API tokens, one a line: 'sha256:<hash> county <area code>' (reads its area and below) or 'sha256:<hash> auditor' (every area); make one with python -m services.reporting.tokens")
    api_public: bool = Field(default=False, description="let the API listen beyond loopback without a token (logged as a warning)")
    api_rate_per_s: float = Field(default=20.0, description="requests a second per client (average)")
    log_json: bool | None = Field(default=None, description="JSON log lines; default: JSON unless writing to a terminal")
    log_library_level: str = Field(default="WARNING", description="level of the libraries' loggers (FastStream, nats, SQLAlchemy); masked like every line")
    audit_key: Path | None = Field(default=None, description="Ed25519 private key (PEM) that signs audit checkpoints; keep it off the database host's backups")
    audit_checkpoint_dir: Path | None = Field(default=None, description="where the relay writes a signed checkpoint periodically (with audit_key); ship its files off the database host")
    audit_checkpoint_every_s: float = Field(default=3600.0, gt=0, description="seconds between periodic checkpoints")
    metrics_host: str = Field(default="127.0.0.1", description="where the components serve /metrics, /healthz and /readyz (0.0.0.0 for a Prometheus on another host)")
    metrics_port_enrollment: int = Field(default=0, ge=0, le=65535, description="enrollment's metrics port (0: off; 9641 in docs/operations.md)")
    metrics_port_subsidy: int = Field(default=0, ge=0, le=65535, description="subsidy's metrics port (0: off; 9642)")
    metrics_port_claims: int = Field(default=0, ge=0, le=65535, description="claims' metrics port (0: off; 9643)")
    metrics_port_reporting: int = Field(default=0, ge=0, le=65535, description="reporting's metrics port (0: off; 9644)")
    metrics_port_relay: int = Field(default=0, ge=0, le=65535, description="the relay's metrics port (0: off; 9645); the API serves its own on api_port")

    def metrics_port(self, component: str) -> int:
        """The metrics port of ``component`` (0: none; the API has its own routes)."""
        return int(getattr(self, f"metrics_port_{component}", 0))

    @property
    def nats_servers(self) -> list[str]:
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    @property
    def nats_inbox_prefix(self) -> str:
        """Where replies to our NATS clients go: ``_INBOX_<user>`` of the user in ``nats_url`` (nats'
        shared ``_INBOX`` without one). Derived, not set: infra/nats/permissions.conf gives each user
        that prefix and no other, so a different one could only break the connection."""
        return inbox_prefix_for(self.nats_servers)

    @field_validator("db_sslmode")
    @classmethod
    def _known_sslmode(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() not in PG_SSLMODES:
            raise ValueError(f"must be one of {', '.join(PG_SSLMODES)}")
        return value.strip().lower() if value else None

    @property
    def database_url(self) -> str:
        """The event log's URL; for PostgreSQL with the ``db_ssl*`` settings added to its query
        (what the URL itself says wins)."""
        url = self.db_url or f"sqlite:///{(self.data_dir / 'guanhuai.db').resolve()}"
        extra = {"sslmode": self.db_sslmode, "sslrootcert": self.db_sslrootcert, "sslcert": self.db_sslcert,
                 "sslkey": self.db_sslkey}
        extra = {k: str(v) for k, v in extra.items() if v is not None}
        if not extra:
            return url
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            return url
        return parsed.update_query_dict({k: v for k, v in extra.items() if k not in parsed.query}).render_as_string(
            hide_password=False)

    def nats_tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for every NATS connection, or None (plain text) when no TLS setting is given."""
        return nats_tls_context(self.nats_tls_ca, self.nats_tls_cert, self.nats_tls_key, enabled=self.nats_tls)
