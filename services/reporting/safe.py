"""Data from producers (area names above all) leaves the system safe for where it lands: a
spreadsheet must not run it as a formula, a terminal must not obey it as a control sequence or
rich markup. One function per destination, used by every export."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from rich.markup import escape

# What Excel, LibreOffice and Google Sheets read as the start of a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# ANSI escape sequences (CSI ... final byte, OSC ... BEL/ST, and two-byte ESC forms), then any
# C0/C1 control character or DEL left over.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def spreadsheet_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would read as a formula gets a leading ``'`` (so it is shown,
    never computed); numbers and other values pass unchanged (a negative number stays a number)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def terminal_text(value: str) -> str:
    """Text for a rich console: escape sequences and control characters removed, rich markup
    escaped so ``[bold]`` is shown as written."""
    return escape(_CONTROL.sub("", _ANSI.sub("", value)))


def json_line(text: str) -> str:
    """A JSON text with DEL and the C1 controls written as ``\\u`` escapes: json.dumps leaves them
    raw with ensure_ascii=False, and some terminals obey U+009B as an escape sequence."""
    return re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)


# Reports can be asked "as of" a time; outside these bounds no programme year can have figures,
# and near the ends of the calendar converting between time zones overflows.
EARLIEST = date(1900, 1, 1)
LATEST = date(2999, 12, 31)


def cutoff_problem(name: str, value: date | datetime) -> str | None:
    """Why a report cannot be cut at ``value`` (one line, Chinese and English), or None."""
    day = value.date() if isinstance(value, datetime) else value
    if EARLIEST <= day <= LATEST:
        return None
    return (f"{name} 须在 {EARLIEST} 与 {LATEST} 之间 / {name} must lie between {EARLIEST} and {LATEST}, "
            f"not {value.isoformat()}")
