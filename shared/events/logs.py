"""Structured service logs (structlog): JSON lines in production, readable lines in a terminal.

Every line carries the service name and whatever the handler binds (event id, correlation id,
stream, position). Resident ID numbers never appear whole, nor their front part: every line of
the process, structlog's and the standard library's (FastStream, nats-py, uvicorn, SQLAlchemy,
asyncio, warnings), goes through one handler whose last step masks it (:func:`mask_text` on
every key and value, then on the rendered line). Long values are cut before that step, never
inside a run of digits, so a cut can neither hide an ID from the masking nor leave part of one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

import structlog

# Loggers of libraries, quiet below ``library_level`` (``GUANHUAI_LOG_LIBRARY_LEVEL``); uvicorn's
# are not among them: its start line and access log are the API's own.
LIBRARY_LOGGERS = ("faststream", "nats", "sqlalchemy", "psycopg", "asyncio")
MAX_VALUE_CHARS = 500  # a value longer than this is cut (tracebacks are kept whole)
_KEPT_WHOLE = frozenset({"exception", "stack", "stack_info"})
# 15 or more digits in a row (\d: any decimal digit, full-width ０-９ too), with the check
# character X after them if there is one: an 18-character ID, an old 15-digit one, or the front
# of one that something cut. Runs this long are rarely anything else (a hex digest now and then).
_DIGIT_RUN = re.compile(r"\d{15,}[XxＸｘ]?")
_TRAILING_DIGITS = re.compile(r"\d+\Z")
_ID_LENGTH = 18


def _masked_run(match: re.Match[str]) -> str:
    run = match.group()
    if len(run) == _ID_LENGTH:  # a whole ID: its usual masked form, as listings show it (3504**********123X)
        return run[:4] + "*" * 10 + run[-4:]
    return run[:4] + "*" * (len(run) - 4)  # anything else: only the region's first 4 digits


# The password of a URL (nats://services:secret@host): logged server lists and error texts carry them.
_URL_PASSWORD = re.compile(r"(\w://[^\s:/@]*:)[^\s@/]+@")


def mask_text(text: str) -> str:
    """Mask every run of 15 or more digits (ASCII or full-width) in ``text``, and URL passwords."""
    return _URL_PASSWORD.sub(r"\1***@", _DIGIT_RUN.sub(_masked_run, text))


def mask_value(value: Any) -> Any:
    """``value`` with every ID-like run masked, whatever its type: keys and values of dicts,
    items of lists, numbers (an ID logged as an int), any object by its ``str``. Numbers and
    flags without such a run are kept as they are."""
    if isinstance(value, str):
        return mask_text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        try:
            text = str(value)
        except ValueError:  # an int too long to print at all
            return f"<int of {value.bit_length()} bits>"
        masked = mask_text(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        return {_mask_key(k): mask_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [mask_value(v) for v in value]
    return mask_text(str(value))


def _mask_key(key: Any) -> Any:
    return mask_value(key) if isinstance(key, (str, int, float)) or key is None else mask_text(str(key))


class _MaskingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def handleError(self, record: logging.LogRecord) -> None:
        # The standard one prints the record's message and arguments to stderr as they are.
        error = type(sys.exc_info()[1]).__name__
        self.stream.write(json.dumps({"event": "log_line_failed", "logger": record.name, "error": error,
                                      "message": mask_text(cut(str(record.msg)))}, ensure_ascii=False) + "\n")


def cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` cut to ``limit`` characters. A run of digits that the cut would split is dropped
    whole: cut at its 14th digit, an ID would keep region and birth date and be too short to mask."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    if text[limit].isdecimal() or text[limit] in "XxＸｘ":
        head = _TRAILING_DIGITS.sub("", head)
    return f"{head}…(+{len(text) - len(head)} chars)"


def cut_long_values(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: cut(v) if isinstance(v, str) and k not in _KEPT_WHOLE else v for k, v in event_dict.items()}


class MaskedRenderer:
    """The last step of every line: mask the event dict, render it, and mask the rendered line
    (so that nothing a renderer adds, such as an object's repr, escapes the masking)."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> str:
        return mask_text(self.renderer(logger, method, mask_value(event_dict)))


def _drop_color_message(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
    return event_dict


def configure_logging(service: str, *, json_lines: bool | None = None, level: str = "INFO", stream: Any = None,
                      library_level: str = "WARNING") -> None:
    """Set up structlog, and route the standard library's logging (FastStream, nats, uvicorn,
    SQLAlchemy, warnings) through the same processors, so every line has the same shape and the
    same masking. Call it after the libraries are imported: a library that gives its logger a
    handler of its own when imported (FastStream does) is routed to ours here.

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
        # FastStream passes the message's subject, stream and id (its Nats-Msg-Id) as extras.
        foreign_pre_chain=[*pre_chain, structlog.stdlib.ExtraAdder(allow=("subject", "stream", "message_id")),
                           _drop_color_message, structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, cut_long_values, MaskedRenderer(renderer)],
    )
    handler = _MaskingHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(level.upper()))
    # Every logger that writes for itself (its own handler, or not passing lines up) is made to
    # pass its lines to the root's handler instead: FastStream's writes plain text to stderr.
    for logger in [x for x in list(logging.root.manager.loggerDict.values()) if isinstance(x, logging.Logger)]:
        for own in list(logger.handlers):
            logger.removeHandler(own)
        logger.propagate = True
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.getLevelName(library_level.upper()))
    # Never SQLAlchemy's statement lines: their parameters carry IDs, and SQLAlchemy cuts a long one
    # in its middle itself, where the pieces can be too short to be recognised and masked.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # warnings (pydantic's name the value they met) as masked lines too
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def info_enabled(log: Any) -> bool:
    """Whether ``log`` would write an info line: lets a hot loop skip building per-item fields.
    True for a logger that cannot tell (structlog's own default, before ``configure_logging``)."""
    check = getattr(log, "isEnabledFor", None)
    return True if check is None else bool(check(logging.INFO))


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("guanhuai").bind(**bound)
