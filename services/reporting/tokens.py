"""Scoped API tokens (issue #21): each county reads only its own reports.

A tokens file (``GUANHUAI_API_TOKENS_FILE``) gives each token a role and an area, one line each:

    sha256:<the token's SHA-256, 64 hex digits>  county   <area code>
    sha256:<...>                                 auditor

- ``county``: reads the reports of its area and of the areas below it (a county's townships; a
  city's or a province's code works the same way), never another's: a request naming another area
  is refused 403 before anything is read; a report that names no area is its own area's;
- ``auditor``: reads every area. The API is read-only for everyone (GET only).

The file holds the tokens' hashes, never the tokens: a token is 32 random bytes (256 bits), so a
plain SHA-256 is as good as a slow hash against guessing, and a copy of the file gives no token.
Make one with ``python -m services.reporting.tokens county <area code>``: it prints the token
(hand it to the county) and the line for the file. ``GUANHUAI_API_TOKEN``, when set, is still one
token that reads everything (a one-county deployment needs nothing else).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

ROLES = ("county", "auditor")
LINE = re.compile(r"sha256:(?P<digest>[0-9a-f]{64})\s+(?P<role>\S+)(?:\s+(?P<area>\S+))?")


@dataclass(frozen=True)
class Scope:
    """What a request may read: ``area`` None is every area."""

    role: str  # "all" (GUANHUAI_API_TOKEN, or an API without tokens), "auditor", "county"
    area: str | None = None
    ident: str = ""  # names the token in a session cookie and in logs (a prefix of its hash); "" for the main token


EVERYTHING = Scope("all")


def digest(token: str | bytes) -> str:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).hexdigest()


class Tokens:
    """The scoped tokens, by the SHA-256 of each."""

    def __init__(self, scopes: dict[str, Scope] | None = None) -> None:
        self.scopes = dict(scopes or {})
        self.by_ident = {scope.ident: scope for scope in self.scopes.values()}

    @classmethod
    def read(cls, path: Path) -> Tokens:
        scopes: dict[str, Scope] = {}
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            match = LINE.fullmatch(line)
            role = match["role"] if match else None
            if match is None or role not in ROLES or (role == "county") != (match["area"] is not None):
                raise ValueError(f"{path}:{number}: expected 'sha256:<64 hex digits> county <area code>' "
                                 f"or 'sha256:<64 hex digits> auditor'")
            scopes[match["digest"]] = Scope(role, match["area"], match["digest"][:16])  # type: ignore[arg-type]
        return cls(scopes)

    def scope_of(self, token: bytes) -> Scope | None:
        """The scope of a token as sent, or None. Looked up by its hash: what a lookup's timing
        could tell is about a hash, not about a token."""
        return self.scopes.get(digest(token)) if token else None

    def __bool__(self) -> bool:
        return bool(self.scopes)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ROLES or (argv[0] == "county") != (len(argv) == 2) or len(argv) > 2:
        print("usage: python -m services.reporting.tokens county <area code> | auditor", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(32)
    print(f"token (give it to its holder; it is not stored): {token}")
    print(f"line for GUANHUAI_API_TOKENS_FILE: sha256:{digest(token)} {' '.join(argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
