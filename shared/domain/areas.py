"""Which registered area a producer means: townships and villages named by code, registered
Chinese name or registered alias all come to the one area code (pure; no I/O).

Rules, shared by enrollment (households) and reporting (targets) so that both read a name alike:
- an exact code wins; else the one area of that level whose name or an alias is the text sent
  (villages: among the villages of the township); two such areas: the name is ambiguous, none is
  taken;
- a level is checked once the county has registered areas of it: before any township is
  registered, a township is taken as sent (a county that never registered its hierarchy keeps
  working as before); before a township has any village registered, its villages are free text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Area:
    code: str
    name: str
    level: str  # county, township, village (AreaLevel's values)
    parent_code: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unresolved:
    """A name that names no area, or more than one: ``detail`` says which, for the people who sent it."""

    sent: str
    detail: str


@dataclass
class Areas:
    """The registered areas by code; a later registration of a code replaces the earlier one."""

    by_code: dict[str, Area] = field(default_factory=dict)
    _index: _Index | None = field(default=None, init=False, repr=False, compare=False)  # built once per change

    @classmethod
    def of(cls, areas: Iterable[Area]) -> Areas:
        made = cls()
        for area in areas:
            made.register(area)
        return made

    def register(self, area: Area) -> None:
        self.by_code[area.code] = area
        self._index = None

    def township(self, sent: str) -> str | Unresolved:
        """The township code ``sent`` names (a code, a registered name or alias)."""
        return self._resolve("township", None, sent)

    def village(self, township: str, sent: str) -> str | Unresolved:
        """The code of the village of ``township`` that ``sent`` names."""
        return self._resolve("village", township, sent)

    def _resolve(self, level: str, parent: str | None, sent: str) -> str | Unresolved:
        index = self._names()
        if (level, parent) not in index.scopes:
            return sent  # nothing of this level registered (here): not checked
        area = self.by_code.get(sent)
        if area is not None and (area.level, _scope(area)) == (level, parent):
            return sent
        found = index.codes.get((level, parent, sent), set())
        if len(found) == 1:
            return next(iter(found))
        zh, where = ("乡镇", "") if parent is None else ("村", f" of township {parent}")
        if found:
            codes = ", ".join(sorted(found))
            return Unresolved(sent, f"{zh}“{sent}”对应多个地区（{codes}），请填写代码 / "
                                    f"{level} {sent!r} names {len(found)} areas ({codes}); send the code")
        return Unresolved(sent, f"{zh}“{sent}”未登记 / {level} {sent!r} is no registered {level}{where} (by code, name or alias)")

    def _names(self) -> _Index:
        if self._index is None:
            self._index = _Index.of(self.by_code.values())
        return self._index


def _scope(area: Area) -> str | None:
    """Where a name must be unique: villages within their township, townships in the whole county."""
    return area.parent_code if area.level == "village" else None


@dataclass(frozen=True)
class _Index:
    scopes: set[tuple[str, str | None]]  # (level, scope) with an area registered
    codes: dict[tuple[str, str | None, str], set[str]]  # (level, scope, name or alias) -> codes

    @classmethod
    def of(cls, areas: Iterable[Area]) -> _Index:
        index = cls(set(), {})
        for area in areas:
            index.scopes.add((area.level, _scope(area)))
            for name in {area.name, *area.aliases}:
                index.codes.setdefault((area.level, _scope(area), name), set()).add(area.code)
        return index


# The levels of the hierarchy, top down (AreaLevel's values). Reports roll township figures up to
# any level above; villages have no figures of their own in the read model.
LEVELS = ("province", "city", "county", "township", "village")


def level_rank(level: str) -> int:
    """0 for a province, 4 for a village; a level no area has is a ValueError."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValueError(f"level {level!r} is none of {', '.join(LEVELS)}") from None


@dataclass(frozen=True)
class AreaTree:
    """The hierarchy as registered (each area names its parent): what is above an area, and which
    area a name means when any level may be meant (pure; no I/O). Parents need not be registered
    (a county of a one-county deployment names none); a loop of parents ends the walk up."""

    by_code: dict[str, Area]

    @classmethod
    def of(cls, areas: Iterable[Area]) -> AreaTree:
        return cls({area.code: area for area in areas})

    def level_of(self, code: str) -> str | None:
        area = self.by_code.get(code)
        return area.level if area else None

    def name_of(self, code: str) -> str:
        area = self.by_code.get(code)
        return area.name if area else code

    def ancestor_at(self, code: str, level: str) -> str | None:
        """The area of ``level`` that ``code`` lies in (``code`` itself when of that level), or None."""
        seen: set[str] = set()
        current: str | None = code
        while current is not None and current not in seen:
            area = self.by_code.get(current)
            if area is None:
                return None
            if area.level == level:
                return current
            seen.add(current)
            current = area.parent_code
        return None

    def find(self, sent: str) -> str | Unresolved:
        """The area ``sent`` names at any level: an exact code, else the one area whose name or
        alias it is (two: ambiguous, send the code)."""
        if sent in self.by_code:
            return sent
        found = sorted(a.code for a in self.by_code.values() if sent in (a.name, *a.aliases))
        if len(found) == 1:
            return found[0]
        if found:
            codes = ", ".join(found)
            return Unresolved(sent, f"地区“{sent}”对应多个地区（{codes}），请填写代码 / area {sent!r} names {len(found)} areas ({codes}); send the code")
        return Unresolved(sent, f"地区“{sent}”未登记 / area {sent!r} is no registered area (by code, name or alias)")
