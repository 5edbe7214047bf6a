"""Unit tests for shared.domain.identity: GB 11643-1999 resident ID numbers and their masking."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.identity import (
    ResidentId,
    ResidentIdError,
    check_character,
    make_resident_id,
    mask,
    mask_in_text,
    parse_resident_id,
    resident_id_birth_date,
)

no_db = settings(database=None)

# A published valid example whose check character is X (Beijing Chaoyang, born 1949-12-31).
VALID_X = "11010519491231002X"
# A published valid example with a digit check character (Guangdong, born 1880-01-01).
VALID_DIGIT = "440524188001010014"


def iso7064_mod11_2(first17: str) -> str:
    """Independent oracle: ISO 7064 MOD 11-2 defines the check value c so that
    sum(a_i * 2**(i-1)) + c == 1 (mod 11), positions i counted from the right with the check at i=1."""
    total = sum(int(d) * pow(2, 17 - k, 11) for k, d in enumerate(first17))
    value = (1 - total) % 11
    return "X" if value == 10 else str(value)


def with_check(first17: str) -> str:
    return first17 + iso7064_mod11_2(first17)


# --- check character --------------------------------------------------------------------------


def test_check_character_of_the_published_example_is_x():
    assert check_character(VALID_X[:17]) == "X"


def test_check_character_x_follows_from_the_weighted_sum_worked_by_hand():
    # digits  1 1  0 1 0 5 1 9 4 9 1 2  3 1 0 0 2
    # weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
    # products 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4 = 167; 167 mod 11 = 2; "10X98765432"[2] = "X"
    digits = [int(d) for d in VALID_X[:17]]
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(d * w for d, w in zip(digits, weights))
    assert total == 167
    assert total % 11 == 2
    assert check_character(VALID_X[:17]) == "10X98765432"[2] == "X"


def test_check_character_of_a_published_example_ending_in_a_digit():
    assert check_character(VALID_DIGIT[:17]) == "4"


@pytest.mark.parametrize(
    "first17",
    ["00000000000000000", "11111111111111111", "99999999999999999", "35042319800101001", "53040220000229002"],
)
def test_check_character_agrees_with_the_iso_7064_definition(first17):
    assert check_character(first17) == iso7064_mod11_2(first17)


@no_db
@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_check_character_satisfies_the_mod_11_2_congruence_for_any_17_digits(first17):
    c = check_character(first17)
    value = 10 if c == "X" else int(c)
    total = sum(int(d) * pow(2, 17 - k, 11) for k, d in enumerate(first17)) + value
    assert total % 11 == 1


@pytest.mark.parametrize("length", [16, 18])
def test_check_character_refuses_anything_but_17_digits(length):
    with pytest.raises(ValueError):
        check_character("1" * length)


@pytest.mark.parametrize("text", ["1234567890123456a", "１２３４５６７８９０１２３４５６７", "12345678901234 67", "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧"])
def test_check_character_refuses_anything_but_ascii_digits(text):
    with pytest.raises(ValueError):
        check_character(text)


# --- parse_resident_id: accepted -------------------------------------------------------------


def test_parse_accepts_a_valid_number_ending_in_x_and_reads_its_birth_date():
    rid = parse_resident_id(VALID_X)
    assert rid.number == VALID_X
    assert rid.birth_date == date(1949, 12, 31)


def test_parse_accepts_a_valid_number_ending_in_a_digit():
    rid = parse_resident_id(VALID_DIGIT)
    assert rid.number == VALID_DIGIT
    assert rid.birth_date == date(1880, 1, 1)


def test_parse_reads_a_lower_case_x_as_upper_case():
    rid = parse_resident_id(VALID_X.lower())
    assert rid.number == VALID_X
    assert rid == parse_resident_id(VALID_X)


def test_parse_ignores_surrounding_whitespace():
    assert parse_resident_id(f"  {VALID_X}\n").number == VALID_X


@pytest.mark.parametrize("birth", ["20000229", "20240229", "19960229"])
def test_parse_accepts_a_29_february_birth_date_in_a_leap_year(birth):
    number = with_check(f"350423{birth}005")
    rid = parse_resident_id(number)
    assert rid.birth_date == date(int(birth[:4]), 2, 29)


# --- parse_resident_id: refused, with reason codes -------------------------------------------


def test_resident_id_error_is_a_value_error_with_a_reason_code():
    with pytest.raises(ValueError) as caught:
        parse_resident_id("")
    assert isinstance(caught.value, ResidentIdError)
    assert caught.value.code == "id_malformed"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "11010519491231002",  # 17 characters
        "11010519491231002X1",  # 19 characters
        "1101051949123100",  # 16 characters
        "11010519491231002Y",  # check character not 0-9 or X
        "1101051949123100X2",  # X not in the last place
        "A1010519491231002X",  # a letter among the digits
        "110105 19491231002X",  # a space inside
        "110105-19491231-002X",  # separators
        "110105491231002",  # the old 15-digit form
    ],
)
def test_parse_reports_a_malformed_number_as_id_malformed(bad):
    with pytest.raises(ResidentIdError) as caught:
        parse_resident_id(bad)
    assert caught.value.code == "id_malformed"


@pytest.mark.parametrize(
    "birth",
    [
        "19490230",  # 30 February
        "19000229",  # 1900 is not a leap year
        "20230229",  # 2023 is not a leap year
        "19491301",  # month 13
        "19490001",  # month 0
        "19490100",  # day 0
        "19490431",  # 31 April
        "00000101",  # year 0
    ],
)
def test_parse_reports_an_impossible_birth_date_as_id_bad_birth_date(birth):
    number = with_check(f"110105{birth}002")  # the check character is right: only the date is wrong
    with pytest.raises(ResidentIdError) as caught:
        parse_resident_id(number)
    assert caught.value.code == "id_bad_birth_date"


@pytest.mark.parametrize("wrong", ["0", "1", "2", "9"])
def test_parse_reports_a_wrong_check_character_as_id_bad_check_character(wrong):
    number = VALID_X[:17] + wrong
    with pytest.raises(ResidentIdError) as caught:
        parse_resident_id(number)
    assert caught.value.code == "id_bad_check_character"


def test_parse_reports_x_where_a_digit_is_due_as_id_bad_check_character():
    with pytest.raises(ResidentIdError) as caught:
        parse_resident_id(VALID_DIGIT[:17] + "X")
    assert caught.value.code == "id_bad_check_character"


def test_parse_reports_a_transposition_of_two_digits_as_id_bad_check_character():
    swapped = VALID_DIGIT[:15] + VALID_DIGIT[16] + VALID_DIGIT[15] + VALID_DIGIT[17:]  # "001" -> "010"
    assert swapped != VALID_DIGIT
    with pytest.raises(ResidentIdError) as caught:
        parse_resident_id(swapped)
    assert caught.value.code == "id_bad_check_character"


@pytest.mark.parametrize(
    "bad", [VALID_X[:17] + "1", with_check("11010519490230002")], ids=["bad-check", "bad-date"]
)
def test_error_message_does_not_repeat_the_number(bad):
    with pytest.raises(ResidentIdError) as caught:
        parse_resident_id(bad)
    assert bad[:17] not in str(caught.value)
    assert bad[6:14] not in str(caught.value)


def test_parse_does_not_keep_a_number_written_in_full_width_digits():
    full_width = VALID_X[:17].translate(str.maketrans("0123456789", "０１２３４５６７８９")) + "X"
    try:
        rid = parse_resident_id(full_width)
    except ResidentIdError as exc:
        assert exc.code == "id_malformed"
    else:
        assert rid.number == VALID_X


# --- masking ----------------------------------------------------------------------------------


def test_mask_keeps_the_first_four_and_last_four_characters():
    assert mask(VALID_X) == "1101**********002X"
    assert mask(VALID_DIGIT) == "4405**********0014"


def test_mask_hides_the_birth_date_and_region_detail():
    masked = mask(VALID_X)
    assert len(masked) == len(VALID_X)
    assert "19491231" not in masked
    assert VALID_X not in masked


@pytest.mark.parametrize("short", ["", "1", "12345", "12345678901"])
def test_mask_hides_short_text_completely(short):
    assert mask(short) == "*" * len(short)


def test_a_resident_id_prints_masked_by_str_repr_and_format():
    rid = parse_resident_id(VALID_X)
    assert rid.masked == "1101**********002X"
    assert str(rid) == "1101**********002X"
    assert repr(rid) == "1101**********002X"
    assert f"{rid} {rid!r}" == "1101**********002X 1101**********002X"
    assert VALID_X not in repr([rid, {"id": rid}])


def test_a_resident_id_is_immutable():
    rid = parse_resident_id(VALID_X)
    with pytest.raises(AttributeError):
        rid.number = VALID_DIGIT  # type: ignore[misc]


def test_mask_in_text_masks_an_id_inside_a_sentence_and_leaves_the_rest():
    text = f"申请人张三，身份证号{VALID_X}，电话13800138000，已缴费100元。"
    masked = mask_in_text(text)
    assert VALID_X not in masked
    assert VALID_X[:17] not in masked
    assert masked == "申请人张三，身份证号1101**********002X，电话13800138000，已缴费100元。"


def test_mask_in_text_masks_every_id_in_the_text():
    text = f"insured {VALID_X} and {VALID_DIGIT}; done"
    masked = mask_in_text(text)
    assert masked == "insured 1101**********002X and 4405**********0014; done"


def test_mask_in_text_masks_an_id_with_a_lower_case_x():
    masked = mask_in_text(f"id={VALID_X.lower()}")
    assert masked == "id=1101**********002x"
    assert VALID_X[:17] not in masked


@pytest.mark.parametrize("text", [VALID_X, f"{VALID_X}.", f"({VALID_X})", f"ID:{VALID_X}"])
def test_mask_in_text_masks_an_id_at_the_edges_of_the_text(text):
    assert VALID_X[:17] not in mask_in_text(text)


def test_mask_in_text_masks_an_id_that_does_not_pass_the_check():
    # Anything shaped like an ID is personal data in a log line, valid or not.
    typo = VALID_X[:17] + "7"
    assert typo[:17] not in mask_in_text(f"bad input {typo}")


def test_mask_in_text_leaves_text_without_ids_unchanged():
    text = "保费100元，保额214000元，电话13800138000，2024-03-01"
    assert mask_in_text(text) == text


def test_mask_in_text_masks_an_id_number_hidden_in_a_longer_run_of_digits():
    # Privacy first: a run of 19 digits may be an ID number with a digit typed after it, so it is
    # masked too (masking a bank card number in a log line is harmless).
    number = make_resident_id("110105", date(1949, 12, 31), 2)
    masked = mask_in_text(f"tel {number}7")
    assert number not in masked
    assert "*" * 10 in masked


def test_mask_in_text_masks_an_id_ending_in_x_followed_directly_by_digits():
    masked = mask_in_text(f"{VALID_X}13800138000")
    assert VALID_X not in masked


@no_db
@given(
    prefix=st.text(st.characters(blacklist_categories=("Nd", "Cs")), max_size=20),
    suffix=st.text(st.characters(blacklist_categories=("Nd", "Cs")), max_size=20),
    region=st.text(alphabet="0123456789", min_size=6, max_size=6),
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)),
    sequence=st.integers(min_value=0, max_value=999),
)
def test_mask_in_text_never_leaves_a_whole_id_in_its_output(prefix, suffix, region, birth, sequence):
    number = make_resident_id(region, birth, sequence)
    masked = mask_in_text(prefix + number + suffix)
    assert number not in masked
    assert f"{birth:%Y%m%d}" not in masked[len(prefix) : len(prefix) + 18]
    assert masked == prefix + mask(number) + suffix


# --- make_resident_id -------------------------------------------------------------------------


def test_make_resident_id_builds_the_published_example():
    assert make_resident_id("110105", date(1949, 12, 31), 2) == VALID_X


def test_make_resident_id_builds_a_number_born_on_29_february():
    number = make_resident_id("350423", date(2024, 2, 29), 7)
    assert number[:17] == "35042320240229007"
    assert number[17] == iso7064_mod11_2(number[:17])
    assert parse_resident_id(number).birth_date == date(2024, 2, 29)


@pytest.mark.parametrize(
    ("region", "sequence"),
    [("11010", 2), ("1101050", 2), ("11010a", 2), ("", 2), ("110105", -1), ("110105", 1000)],
)
def test_make_resident_id_refuses_a_bad_region_or_sequence(region, sequence):
    with pytest.raises(ValueError):
        make_resident_id(region, date(1980, 1, 1), sequence)


@no_db
@given(
    region=st.text(alphabet="0123456789", min_size=6, max_size=6),
    birth=st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31)),
    sequence=st.integers(min_value=0, max_value=999),
)
def test_a_made_resident_id_parses_back_to_the_same_number_and_birth_date(region, birth, sequence):
    number = make_resident_id(region, birth, sequence)
    assert len(number) == 18
    rid = parse_resident_id(number)
    assert isinstance(rid, ResidentId)
    assert rid.number == number
    assert rid.birth_date == birth
    assert number[:6] == region
    assert int(number[14:17]) == sequence


def _valid_numbers() -> st.SearchStrategy[str]:
    return st.builds(make_resident_id, st.sampled_from(["350421", "110105", "440524"]),
                     st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)), st.integers(0, 999))


def _mutated(number: str, data: st.DataObject) -> str:
    """A valid number, or one with a character replaced, dropped, added, or changed in case."""
    how = data.draw(st.sampled_from(["keep", "replace", "drop", "add", "lower", "spaces"]))
    at = data.draw(st.integers(0, len(number) - 1))
    if how == "replace":
        return number[:at] + data.draw(st.sampled_from(list("0123456789Xx\u0661a"))) + number[at + 1:]
    if how == "drop":
        return number[:at] + number[at + 1:]
    if how == "add":
        return number[:at] + data.draw(st.sampled_from(list("09X"))) + number[at:]
    if how == "lower":
        return number.lower()
    return f" {number} " if how == "spaces" else number


@no_db
@given(_valid_numbers(), st.data())
def test_birth_date_reading_refuses_exactly_what_parsing_refuses(number: str, data: st.DataObject) -> None:
    text = _mutated(number, data)
    try:
        parsed = parse_resident_id(text)
    except ResidentIdError as exc:
        with pytest.raises(ResidentIdError) as again:
            resident_id_birth_date(text)
        assert again.value.code == exc.code
    else:
        assert resident_id_birth_date(text) == parsed.birth_date


def test_birth_date_of_valid_numbers() -> None:
    assert resident_id_birth_date(VALID_X) == date(1949, 12, 31)
    assert resident_id_birth_date(VALID_DIGIT.lower()) == date(1880, 1, 1)
    with pytest.raises(ResidentIdError) as bad:
        resident_id_birth_date(VALID_X[:-1] + "1")
    assert bad.value.code == "id_bad_check_character"
