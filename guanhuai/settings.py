"""Settings from environment variables (``GUANHUAI_*``) and an optional ``guanhuai.env`` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUANHUAI_", env_file="guanhuai.env", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="where embedded parts keep their files")
    db_url: str | None = Field(default=None, description="event log database; default: SQLite in data_dir")

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite+aiosqlite:///{(self.data_dir / 'guanhuai.db').resolve()}"
