"""Settings from environment variables (``GUANHUAI_*``) and an optional ``guanhuai.env`` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUANHUAI_", env_file="guanhuai.env", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="where embedded parts keep their files")
    db_url: str | None = Field(default=None, description="event log database; default: SQLite in data_dir")
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server(s), comma-separated for a cluster")
    nats_replicas: int = Field(default=1, ge=1, le=5, description="JetStream stream replicas (3 on a cluster)")
    log_level: str = Field(default="INFO")
    api_host: str = Field(default="127.0.0.1", description="where the reporting HTTP API listens")
    api_port: int = Field(default=8640)
    api_token: str | None = Field(default=None, description="when set, the HTTP API requires Authorization: Bearer <token>")
    api_rate_per_s: float = Field(default=20.0, description="requests a second per client (average)")
    log_json: bool | None = Field(default=None, description="JSON log lines; default: JSON unless writing to a terminal")

    @property
    def nats_servers(self) -> list[str]:
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite+aiosqlite:///{(self.data_dir / 'guanhuai.db').resolve()}"
