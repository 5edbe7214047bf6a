"""Unit tests for shared.domain.money: integer fen, yuan at the edges, half-up rounding, exact splits."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.money import (
    FEN_PER_YUAN,
    MoneyError,
    apply_ratio,
    parse_yuan,
    round_fen,
    split_equally,
    to_decimal_yuan,
    yuan,
    yuan_grouped,
)

# Property tests keep no example database: these unit tests do no I/O.
no_db = settings(database=None)


# --- yuan formatting -------------------------------------------------------------------------


def test_one_yuan_is_one_hundred_fen():
    assert FEN_PER_YUAN == 100


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (10, "0.10"),
        (99, "0.99"),
        (100, "1.00"),
        (10_000, "100.00"),
        (6_666_667, "66666.67"),
        (6_666_666, "66666.66"),
        (21_400_000, "214000.00"),
        (-5, "-0.05"),
        (-150, "-1.50"),
    ],
)
def test_yuan_shows_fen_as_yuan_with_exactly_two_decimals(fen, text):
    assert yuan(fen) == text


@pytest.mark.parametrize("bad", [1.0, 0.5, Decimal("1"), "100"], ids=["float", "float-half", "decimal", "str"])
def test_yuan_refuses_anything_but_integer_fen(bad):
    with pytest.raises(MoneyError):
        yuan(bad)


def test_money_error_is_a_value_error():
    assert issubclass(MoneyError, ValueError)


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "0.00"),
        (99_999, "999.99"),
        (100_000, "1,000.00"),
        (187_790_000, "1,877,900.00"),
        (318_900_000, "3,189,000.00"),
        (14_280_000, "142,800.00"),
        (-123_456_789, "-1,234,567.89"),
    ],
)
def test_yuan_grouped_adds_thousands_separators_as_printed_in_reports(fen, text):
    assert yuan_grouped(fen) == text


def test_to_decimal_yuan_is_exact_and_not_a_float():
    value = to_decimal_yuan(6_666_667)
    assert isinstance(value, Decimal)
    assert value == Decimal("66666.67")


# --- parse_yuan ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_amount", "fen"),
    [
        ("100", 10_000),
        ("100.00", 10_000),
        ("0.01", 1),
        ("0.1", 10),
        ("66,666.67", 6_666_667),
        ("1,877,900.00", 187_790_000),
        ("  12.50 ", 1_250),
        ("1.230", 123),  # trailing zeros are not extra precision
        (Decimal("0.5"), 50),
        (Decimal("214000"), 21_400_000),
        (100, 10_000),
        (0, 0),
    ],
)
def test_parse_yuan_reads_yuan_as_exact_fen(given_amount, fen):
    result = parse_yuan(given_amount)
    assert result == fen
    assert type(result) is int


@pytest.mark.parametrize("bad", [0.5, 100.0, 66666.67], ids=["0.5", "100.0", "66666.67"])
def test_parse_yuan_refuses_floats(bad):
    with pytest.raises(MoneyError, match="float"):
        parse_yuan(bad)


@pytest.mark.parametrize("bad", ["0.001", "66666.675", Decimal("0.005"), "1.2345"])
def test_parse_yuan_refuses_amounts_more_precise_than_one_fen_instead_of_rounding(bad):
    with pytest.raises(MoneyError, match="more precise than one fen"):
        parse_yuan(bad)


@pytest.mark.parametrize("bad", ["", "   ", "abc", "100元", "1.2.3", "NaN", "Infinity", "-Infinity", "sNaN"])
def test_parse_yuan_refuses_text_that_is_not_a_finite_amount(bad):
    with pytest.raises(MoneyError, match="not an amount in yuan"):
        parse_yuan(bad)


@no_db
@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_formatting_then_parsing_gives_back_the_same_fen(fen):
    assert parse_yuan(yuan(fen)) == fen
    assert parse_yuan(yuan_grouped(fen)) == fen


# --- round_fen: half up (四舍五入), never banker's rounding --------------------------------------


@pytest.mark.parametrize(
    ("amount", "fen"),
    [
        ("0.5", 1),
        ("1.5", 2),
        ("2.5", 3),  # banker's rounding would give 2
        ("4.5", 5),  # banker's rounding would give 4
        ("0.49999", 0),
        ("0.50001", 1),
        ("2.4", 2),
        ("2.6", 3),
        ("7", 7),
        ("0", 0),
        ("-0.5", -1),  # half away from zero
        ("-2.5", -3),
        ("-2.4", -2),
    ],
)
def test_round_fen_rounds_half_up(amount, fen):
    result = round_fen(Decimal(amount))
    assert result == fen
    assert type(result) is int


# --- apply_ratio ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fen", "ratio", "expected"),
    [
        (5, "0.5", 3),  # 2.5 fen -> 3
        (3, "0.5", 2),  # 1.5 fen -> 2
        (1, "0.5", 1),  # 0.5 fen -> 1
        (15, "0.3", 5),  # 4.5 fen -> 5
        (6_666_667, "1", 6_666_667),  # grade 1, 100%
        (6_666_667, "0.9", 6_000_000),  # grade 2: 6000000.3 -> 6000000
        (6_666_667, "0.8", 5_333_334),  # grade 3: 5333333.6 -> 5333334
        (6_666_667, "0.1", 666_667),  # grade 10: 666666.7 -> 666667
        (6_666_666, "0.5", 3_333_333),
        (1_400_000, "0", 0),
    ],
)
def test_apply_ratio_rounds_the_product_half_up_to_the_fen(fen, ratio, expected):
    assert apply_ratio(fen, ratio) == expected
    assert apply_ratio(fen, Decimal(ratio)) == expected


def test_apply_ratio_rounds_once_at_the_end_not_per_step():
    # 0.45 fen then 0.5 fen would round up twice (to 1); one rounding of 0.45 gives 0.
    assert apply_ratio(1, Decimal("0.45")) == 0


def test_apply_ratio_refuses_a_float_ratio():
    with pytest.raises((MoneyError, TypeError)):
        apply_ratio(15, 0.3)


@no_db
@given(
    st.integers(min_value=0, max_value=10**12),
    st.decimals(min_value=0, max_value=1, places=4, allow_nan=False, allow_infinity=False),
)
def test_apply_ratio_matches_exact_half_up_rounding_of_the_rational_product(fen, ratio):
    exact = Fraction(fen) * Fraction(ratio)
    assert apply_ratio(fen, ratio) == math.floor(exact + Fraction(1, 2))


# --- split_equally ----------------------------------------------------------------------------


def test_two_hundred_thousand_yuan_among_three_members_gives_the_leftover_fen_to_the_first_two():
    shares = split_equally(parse_yuan("200000"), 3)
    assert shares == [6_666_667, 6_666_667, 6_666_666]
    assert [yuan(s) for s in shares] == ["66666.67", "66666.67", "66666.66"]
    assert sum(shares) == 20_000_000


@pytest.mark.parametrize(
    ("total", "parts", "shares"),
    [
        (20_000_000, 1, [20_000_000]),
        (20_000_000, 2, [10_000_000, 10_000_000]),
        (20_000_000, 4, [5_000_000] * 4),
        (20_000_000, 6, [3_333_334, 3_333_334, 3_333_333, 3_333_333, 3_333_333, 3_333_333]),
        (20_000_000, 7, [2_857_143] * 6 + [2_857_142]),  # 7 x 2857142 = 19999994, 6 fen left
        (2, 3, [1, 1, 0]),
        (0, 3, [0, 0, 0]),
    ],
)
def test_split_equally_gives_equal_shares_with_leftover_fen_first(total, parts, shares):
    assert split_equally(total, parts) == shares


@pytest.mark.parametrize("parts", [0, -1])
def test_split_equally_refuses_to_split_among_no_one(parts):
    with pytest.raises(MoneyError):
        split_equally(20_000_000, parts)


def test_split_equally_refuses_a_negative_amount():
    with pytest.raises(MoneyError):
        split_equally(-1, 3)


@no_db
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=50))
def test_split_equally_shares_add_up_exactly_to_the_total(total, parts):
    shares = split_equally(total, parts)
    assert len(shares) == parts
    assert sum(shares) == total
    assert all(type(s) is int for s in shares)


@no_db
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=50))
def test_split_equally_shares_differ_by_at_most_one_fen(total, parts):
    shares = split_equally(total, parts)
    assert max(shares) - min(shares) <= 1


@no_db
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=50))
def test_split_equally_puts_the_larger_shares_first(total, parts):
    shares = split_equally(total, parts)
    assert shares == sorted(shares, reverse=True)
    assert shares.count(max(shares)) == (total % parts or parts)
