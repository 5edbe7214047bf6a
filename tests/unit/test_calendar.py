"""Unit tests for shared.domain.calendar: China Standard Time, cover periods and ages (周岁)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.calendar import (
    CST,
    MAX_AGE_FIRST_ENROLMENT,
    MAX_AGE_RENEWAL,
    MIN_AGE_DAYS,
    CoverPeriod,
    age_on,
    age_refusal,
    anniversary,
    birthday_in,
    cover_period,
    cst_date,
    end_of_day,
    now_cst,
    start_of_day,
)

no_db = settings(database=None)
UTC = timezone.utc


def cst(*args: int) -> datetime:
    return datetime(*args, tzinfo=CST)


# --- China Standard Time ----------------------------------------------------------------------


def test_china_standard_time_is_utc_plus_eight():
    assert CST.utcoffset(None) == timedelta(hours=8)


@pytest.mark.parametrize("month", [1, 7])  # no daylight saving, winter or summer
def test_china_standard_time_has_the_same_offset_all_year(month):
    assert cst(2024, month, 1).utcoffset() == timedelta(hours=8)


def test_now_cst_is_an_aware_instant_in_china_standard_time():
    now = now_cst()
    assert now.utcoffset() == timedelta(hours=8)
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("instant", "day"),
    [
        (datetime(2024, 3, 1, 15, 59, 59, tzinfo=UTC), date(2024, 3, 1)),
        (datetime(2024, 3, 1, 16, 0, tzinfo=UTC), date(2024, 3, 2)),  # 00:00 CST
        (cst(2024, 3, 2, 0, 0), date(2024, 3, 2)),
        (datetime(2024, 3, 2, 0, 0, tzinfo=timezone(timedelta(hours=-5))), date(2024, 3, 2)),  # 13:00 CST
        (datetime(2024, 12, 31, 16, 0, tzinfo=UTC), date(2025, 1, 1)),
    ],
)
def test_cst_date_is_the_calendar_date_in_china(instant, day):
    assert cst_date(instant) == day


def test_cst_date_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="naive"):
        cst_date(datetime(2024, 3, 1, 12, 0))


def test_start_of_day_is_midnight_china_standard_time():
    start = start_of_day(date(2024, 3, 2))
    assert start == cst(2024, 3, 2, 0, 0)
    assert start == datetime(2024, 3, 1, 16, 0, tzinfo=UTC)
    assert start.utcoffset() == timedelta(hours=8)


def test_end_of_day_is_24_00_which_is_midnight_of_the_next_day():
    assert end_of_day(date(2025, 3, 1)) == cst(2025, 3, 2, 0, 0)
    assert end_of_day(date(2024, 2, 28)) == cst(2024, 2, 29, 0, 0)
    assert end_of_day(date(2024, 12, 31)) == cst(2025, 1, 1, 0, 0)


# --- anniversary ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "years", "expected"),
    [
        (date(2024, 3, 1), 1, date(2025, 3, 1)),
        (date(2023, 2, 28), 1, date(2024, 2, 28)),
        (date(2024, 2, 28), 1, date(2025, 2, 28)),
        (date(2024, 2, 29), 1, date(2025, 2, 28)),  # 29 Feb into a common year -> 28 Feb
        (date(2024, 2, 29), 4, date(2028, 2, 29)),  # into a leap year it stays
        (date(2024, 2, 29), -1, date(2023, 2, 28)),
        (date(2024, 12, 31), 1, date(2025, 12, 31)),
        (date(2024, 3, 1), 0, date(2024, 3, 1)),
    ],
)
def test_anniversary_is_the_same_month_and_day_years_later(day, years, expected):
    assert anniversary(day, years) == expected


# --- cover_period -----------------------------------------------------------------------------


def test_cover_issued_1_march_2024_runs_from_2_march_2024_00_00_to_1_march_2025_24_00_cst():
    period = cover_period(date(2024, 3, 1))
    assert period.first_day == date(2024, 3, 2)
    assert period.last_day == date(2025, 3, 1)
    assert period.start == cst(2024, 3, 2, 0, 0)
    assert period.end == cst(2025, 3, 2, 0, 0)  # 24:00 on 1 March 2025, exclusive


def test_cover_boundaries_are_aware_instants_in_china_standard_time():
    period = cover_period(date(2024, 3, 1))
    assert period.start.utcoffset() == timedelta(hours=8)
    assert period.end.utcoffset() == timedelta(hours=8)
    assert period.start == datetime(2024, 3, 1, 16, 0, tzinfo=UTC)
    assert period.end == datetime(2025, 3, 1, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("instant", "covered"),
    [
        (cst(2024, 3, 1, 23, 59, 59, 999999), False),  # the day of issue is not covered
        (cst(2024, 3, 2, 0, 0), True),  # 00:00 the day after issue: start is inclusive
        (cst(2024, 9, 1, 12, 0), True),
        (cst(2025, 3, 1, 23, 59, 59, 999999), True),  # last instant of the end date
        (cst(2025, 3, 2, 0, 0), False),  # 24:00 on the end date: end is exclusive
        (datetime(2024, 3, 1, 15, 59, 59, tzinfo=UTC), False),  # 23:59:59 CST on 1 March
        (datetime(2024, 3, 1, 16, 0, tzinfo=UTC), True),  # 00:00 CST on 2 March
        (datetime(2025, 3, 1, 15, 59, 59, tzinfo=UTC), True),
        (datetime(2025, 3, 1, 16, 0, tzinfo=UTC), False),
    ],
)
def test_cover_includes_its_start_and_excludes_its_end_in_china_standard_time(instant, covered):
    assert cover_period(date(2024, 3, 1)).covers(instant) is covered


@pytest.mark.parametrize(
    ("day", "covered"),
    [
        (date(2024, 3, 1), False),
        (date(2024, 3, 2), True),
        (date(2025, 3, 1), True),
        (date(2025, 3, 2), False),
    ],
)
def test_cover_covers_every_day_from_the_first_to_the_last_inclusive(day, covered):
    assert cover_period(date(2024, 3, 1)).covers_day(day) is covered


def test_cover_issued_on_29_february_ends_on_28_february_the_next_year():
    period = cover_period(date(2024, 2, 29))
    assert period.first_day == date(2024, 3, 1)
    assert period.last_day == date(2025, 2, 28)
    assert period.end == cst(2025, 3, 1, 0, 0)
    assert (period.last_day - period.first_day).days + 1 == 365


def test_cover_issued_on_28_february_of_a_leap_year_starts_on_29_february():
    period = cover_period(date(2024, 2, 28))
    assert period.first_day == date(2024, 2, 29)
    assert period.last_day == date(2025, 2, 28)
    assert period.start == cst(2024, 2, 29, 0, 0)


def test_cover_issued_on_31_december_starts_on_1_january():
    period = cover_period(date(2024, 12, 31))
    assert period.first_day == date(2025, 1, 1)
    assert period.last_day == date(2025, 12, 31)


def test_cover_uses_an_agreed_end_date_when_given():
    period = cover_period(date(2024, 3, 1), end_date=date(2024, 12, 31))
    assert period == CoverPeriod(date(2024, 3, 2), date(2024, 12, 31))
    assert period.end == cst(2025, 1, 1, 0, 0)


def test_cover_may_last_a_single_day_when_the_end_date_is_the_day_after_issue():
    period = cover_period(date(2024, 3, 1), end_date=date(2024, 3, 2))
    assert period.end - period.start == timedelta(days=1)


@pytest.mark.parametrize("end_date", [date(2024, 3, 1), date(2024, 2, 1)], ids=["issue-day", "before-issue"])
def test_cover_refuses_an_end_date_before_the_first_day_of_cover(end_date):
    with pytest.raises(ValueError, match="before the first day"):
        cover_period(date(2024, 3, 1), end_date=end_date)


# --- birthdays and ages (周岁) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "year", "expected"),
    [
        (date(1960, 2, 29), 2026, date(2026, 3, 1)),  # rule: common year -> 1 March
        (date(1960, 2, 29), 2028, date(2028, 2, 29)),
        (date(1960, 2, 28), 2026, date(2026, 2, 28)),
        (date(1960, 3, 1), 2028, date(2028, 3, 1)),
        (date(1959, 12, 31), 2025, date(2025, 12, 31)),
    ],
)
def test_birthday_in_a_year_falls_on_1_march_for_29_february_births_in_common_years(birth, year, expected):
    assert birthday_in(birth, year) == expected


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        (date(2000, 5, 10), date(2000, 5, 10), 0),
        (date(2000, 5, 10), date(2001, 5, 9), 0),
        (date(2000, 5, 10), date(2001, 5, 10), 1),  # a year older on the birthday itself
        (date(1959, 3, 2), date(2025, 3, 1), 65),
        (date(1959, 3, 2), date(2025, 3, 2), 66),
        (date(1959, 12, 31), date(2025, 1, 1), 65),
        (date(1960, 1, 1), date(2025, 12, 31), 65),
    ],
)
def test_age_is_counted_in_completed_years(birth, day, age):
    assert age_on(birth, day) == age


@pytest.mark.parametrize(
    ("day", "age"),
    [
        (date(2025, 2, 28), 0),
        (date(2025, 3, 1), 1),  # 1 March, not 28 February, in a common year
        (date(2028, 2, 28), 3),
        (date(2028, 2, 29), 4),  # the real birthday in a leap year
        (date(2026, 2, 28), 1),
        (date(2026, 3, 1), 2),
    ],
)
def test_a_person_born_on_29_february_turns_a_year_older_on_1_march_in_common_years(day, age):
    assert age_on(date(2024, 2, 29), day) == age


def test_age_refuses_a_day_before_birth():
    with pytest.raises(ValueError):
        age_on(date(2024, 3, 1), date(2024, 2, 29))


@no_db
@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
    years=st.integers(min_value=1, max_value=120),
)
def test_age_goes_up_by_one_exactly_on_the_birthday(birth, years):
    birthday = birthday_in(birth, birth.year + years)
    assert age_on(birth, birthday) == years
    assert age_on(birth, birthday - timedelta(days=1)) == years - 1


# --- age_refusal: who may be insured on the first day of cover ---------------------------------


def test_the_age_limits_are_28_days_65_and_70_on_renewal():
    assert (MIN_AGE_DAYS, MAX_AGE_FIRST_ENROLMENT, MAX_AGE_RENEWAL) == (28, 65, 70)


FIRST_DAY = date(2024, 3, 2)


def test_admits_a_baby_exactly_28_days_old_on_the_first_day_of_cover():
    birth = FIRST_DAY - timedelta(days=28)
    assert birth == date(2024, 2, 3)
    assert age_refusal(birth, FIRST_DAY, renewal=False) is None


def test_rejects_a_baby_only_27_days_old_on_the_first_day_of_cover():
    birth = FIRST_DAY - timedelta(days=27)
    assert age_refusal(birth, FIRST_DAY, renewal=False) == "too_young"


@pytest.mark.parametrize("renewal", [False, True])
def test_rejects_a_baby_under_28_days_on_renewal_too(renewal):
    assert age_refusal(date(2024, 2, 10), FIRST_DAY, renewal=renewal) == "too_young"


@pytest.mark.parametrize(
    ("birth", "first_day", "refusal"),
    [
        (date(2024, 2, 29), date(2024, 3, 28), None),  # born on a leap day, 28 days
        (date(2024, 2, 29), date(2024, 3, 27), "too_young"),  # 27 days
        (date(2024, 2, 1), date(2024, 2, 29), None),  # 28 days counting 29 February
        (date(2024, 2, 1), date(2024, 2, 28), "too_young"),
        (date(2023, 2, 1), date(2023, 3, 1), None),  # 28 days across a common February
        (date(2023, 2, 2), date(2023, 3, 1), "too_young"),
    ],
)
def test_28_days_counts_calendar_days_including_leap_days(birth, first_day, refusal):
    assert age_refusal(birth, first_day, renewal=False) == refusal


def test_rejects_a_person_not_yet_born_on_the_first_day_of_cover():
    assert age_refusal(date(2024, 3, 10), FIRST_DAY, renewal=False) == "too_young"


def test_admits_a_newborn_born_on_the_day_of_issue_once_28_days_have_passed():
    assert age_refusal(date(2024, 3, 1), date(2024, 3, 29), renewal=False) is None


def test_admits_a_member_who_is_65_on_the_first_day_of_cover():
    birth = date(1958, 3, 3)  # turns 66 on 3 March 2024, the day after the first day of cover
    assert age_on(birth, FIRST_DAY) == 65
    assert age_refusal(birth, FIRST_DAY, renewal=False) is None


def test_admits_a_member_who_turned_65_on_the_first_day_of_cover():
    birth = date(1959, 3, 2)
    assert age_on(birth, FIRST_DAY) == 65
    assert age_refusal(birth, FIRST_DAY, renewal=False) is None


def test_rejects_member_who_turns_66_on_the_first_day_of_cover():
    birth = date(1958, 3, 2)
    assert age_on(birth, FIRST_DAY) == 66
    assert age_refusal(birth, FIRST_DAY, renewal=False) == "too_old"


def test_rejects_member_who_turned_66_before_first_day_of_cover():
    assert age_refusal(date(1958, 1, 1), FIRST_DAY, renewal=False) == "too_old"


def test_admits_a_member_of_66_on_renewal():
    assert age_refusal(date(1958, 3, 2), FIRST_DAY, renewal=True) is None


def test_admits_a_renewing_member_who_is_70_on_the_first_day_of_cover():
    birth = date(1953, 3, 3)  # turns 71 the day after the first day of cover
    assert age_on(birth, FIRST_DAY) == 70
    assert age_refusal(birth, FIRST_DAY, renewal=True) is None


def test_rejects_a_renewing_member_who_turns_71_on_the_first_day_of_cover():
    birth = date(1953, 3, 2)
    assert age_on(birth, FIRST_DAY) == 71
    assert age_refusal(birth, FIRST_DAY, renewal=True) == "too_old_renewal"


def test_rejects_a_renewing_member_who_turned_71_before_the_first_day_of_cover():
    assert age_refusal(date(1950, 6, 1), FIRST_DAY, renewal=True) == "too_old_renewal"


@pytest.mark.parametrize(
    ("first_day", "renewal", "refusal"),
    [
        # born 29 Feb 1960: 66 on 1 March 2026 (common year), not on 28 February
        (date(2026, 2, 28), False, None),
        (date(2026, 3, 1), False, "too_old"),
        # born 29 Feb 1956 (renewal): 71 on 1 March 2027 (common year)
        (date(2027, 2, 28), True, None),
        (date(2027, 3, 1), True, "too_old_renewal"),
    ],
)
def test_a_member_born_on_29_february_reaches_the_age_limit_on_1_march_in_a_common_year(
    first_day, renewal, refusal
):
    birth = date(1956, 2, 29) if renewal else date(1960, 2, 29)
    assert age_refusal(birth, first_day, renewal=renewal) == refusal


def test_a_member_born_on_29_february_has_the_birthday_on_29_february_in_a_leap_year():
    # 66 is not a multiple of 4, so a 66th birthday never falls in a leap year; check a 64th one.
    birth = date(1964, 2, 29)
    assert age_on(birth, date(2028, 2, 28)) == 63
    assert age_on(birth, date(2028, 2, 29)) == 64


def test_the_first_day_of_cover_from_cover_period_is_the_day_age_limits_are_checked_on():
    period = cover_period(date(2024, 3, 1))
    assert age_refusal(date(1958, 3, 2), period.first_day, renewal=False) == "too_old"  # 66 on 2 March
    assert age_refusal(date(1958, 3, 3), period.first_day, renewal=False) is None  # 66 only on 3 March
