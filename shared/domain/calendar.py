"""China Standard Time dates, cover periods and ages in completed years (周岁).

China Standard Time is UTC+8 all year (no daylight saving since 1991), so a fixed offset is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

CST = timezone(timedelta(hours=8), "CST")

MIN_AGE_DAYS = 28
MAX_AGE_FIRST_ENROLMENT = 65
MAX_AGE_RENEWAL = 70


def now_cst() -> datetime:
    return datetime.now(CST)


def cst_date(instant: datetime) -> date:
    """The calendar date in China of an aware instant."""
    if instant.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; give a timezone")
    return instant.astimezone(CST).date()


def start_of_day(day: date) -> datetime:
    """00:00 China Standard Time on ``day``."""
    return datetime.combine(day, time(0), CST)


def end_of_day(day: date) -> datetime:
    """24:00 China Standard Time on ``day``, i.e. 00:00 the next day (an exclusive bound)."""
    return start_of_day(day + timedelta(days=1))


def anniversary(day: date, years: int) -> date:
    """The same month and day ``years`` later; 29 February falls on 28 February in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February into a common year
        return date(day.year + years, 2, 28)


@dataclass(frozen=True, slots=True)
class CoverPeriod:
    """Cover from 00:00 the day after issue to 24:00 on the end date, China Standard Time.

    ``start`` is inclusive and ``end`` exclusive; both are aware instants in CST.
    """

    first_day: date
    last_day: date

    @property
    def start(self) -> datetime:
        return start_of_day(self.first_day)

    @property
    def end(self) -> datetime:
        return end_of_day(self.last_day)

    def covers_day(self, day: date) -> bool:
        return self.first_day <= day <= self.last_day

    def covers(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def cover_period(issued_on: date, end_date: date | None = None) -> CoverPeriod:
    """Cover for a policy agreed, paid and issued on ``issued_on``.

    With no agreed end date the term is one year: issued 1 March 2024 gives cover from
    2 March 2024 00:00 to 1 March 2025 24:00. Issued on 29 February 2024, the end date is
    28 February 2025 (one year, as :func:`anniversary` counts it).
    """
    last = end_date if end_date is not None else anniversary(issued_on, 1)
    first = issued_on + timedelta(days=1)
    if last < first:
        raise ValueError("the end date is before the first day of cover")
    return CoverPeriod(first, last)


def birthday_in(birth: date, year: int) -> date:
    """The birthday in ``year``. Rule for 29 February: in a common year the birthday is 1 March,
    so a person born on 29 February turns a year older on 1 March (not on 28 February)."""
    if birth.month == 2 and birth.day == 29:
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 3, 1)
    return birth.replace(year=year)


def age_on(birth: date, day: date) -> int:
    """Age in completed years (周岁) on ``day``."""
    if day < birth:
        raise ValueError("the day is before the birth date")
    years = day.year - birth.year
    if day < birthday_in(birth, day.year):
        years -= 1
    return years


def age_refusal(birth: date, first_day_of_cover: date, renewal: bool) -> str | None:
    """Why a person cannot be insured on this first day of cover, or None when they can.

    At least 28 days between the birth date and the first day of cover; not yet 66 (or, on a
    renewal, not yet 71) on the first day of cover.
    """
    if (first_day_of_cover - birth).days < MIN_AGE_DAYS:
        return "too_young"
    limit = MAX_AGE_RENEWAL if renewal else MAX_AGE_FIRST_ENROLMENT
    if age_on(birth, first_day_of_cover) > limit:
        return "too_old_renewal" if renewal else "too_old"
    return None
