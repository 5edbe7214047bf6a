"""Structured service logs (structlog): JSON lines in production, readable lines in a terminal.

Every line carries the service name and whatever the handler binds (event id, correlation id,
stream, position). Resident ID numbers never appear whole: the last processor masks every
ID-shaped run of characters in every value, whatever the caller logged.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from shared.domain.identity import mask_in_text


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_in_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_value(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return mask_in_text(str(value))


def mask_resident_ids(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: _mask_value(v) for k, v in event_dict.items()}


def configure_logging(service: str, *, json_lines: bool | None = None, level: str = "INFO", stream: Any = None) -> None:
    """Set up structlog, and route the standard library's logging (FastStream, nats, SQLAlchemy)
    through the same processors, so every line has the same shape and the same masking.

    ``json_lines=None`` picks JSON when the output is not a terminal."""
    out = stream or sys.stderr
    if json_lines is None:
        json_lines = not (hasattr(out, "isatty") and out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=hasattr(out, "isatty") and out.isatty())
    )
    pre_chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        # Lines below the level are dropped first, before any processor runs (a service at WARNING
        # skips the per-input "handled" lines at almost no cost).
        processors=[structlog.stdlib.filter_by_level, *pre_chain, structlog.processors.format_exc_info, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*pre_chain, structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, mask_resident_ids, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(level.upper()))
    for noisy in ("faststream", "nats", "sqlalchemy", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def info_enabled(log: Any) -> bool:
    """Whether ``log`` would write an info line: lets a hot loop skip building per-item fields.
    True for a logger that cannot tell (structlog's own default, before ``configure_logging``)."""
    check = getattr(log, "isEnabledFor", None)
    return True if check is None else bool(check(logging.INFO))


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("guanhuai").bind(**bound)
