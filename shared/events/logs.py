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
    """Set up structlog (and route the standard library's logging through it).

    ``json_lines=None`` picks JSON when the output is not a terminal."""
    out = stream or sys.stderr
    if json_lines is None:
        json_lines = not (hasattr(out, "isatty") and out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=hasattr(out, "isatty") and out.isatty())
    )
    structlog.configure(
        processors=[*shared, mask_resident_ids, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries (FastStream, nats, SQLAlchemy) log through the standard library: same masking.
    handler = logging.StreamHandler(out)
    handler.setFormatter(_MaskingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


class _MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_in_text(super().format(record))


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)
