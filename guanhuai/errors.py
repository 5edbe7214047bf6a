"""Expected failures of the command line: one line for people (Chinese / English) and an exit code.

Helpers raise :class:`Expected`; ``guanhuai.cli.main`` prints its line on stderr and exits with
its code, with no traceback (``GUANHUAI_DEBUG=1`` shows the traceback instead)."""

from __future__ import annotations

import os

USAGE = 2  # the command was asked for something it cannot be (a bad option, a missing file)
FAILURE = 1  # the command was fine, the world was not (no database, NATS away)


class Expected(Exception):
    """A failure the command knows how to explain: ``zh`` and ``en`` are one line each."""

    def __init__(self, zh: str, en: str, code: int = FAILURE) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en
        self.code = code

    @property
    def line(self) -> str:
        return " ".join(f"{self.zh} / {self.en}".split())  # one line, whatever the texts held


def debugging() -> bool:
    return os.environ.get("GUANHUAI_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
