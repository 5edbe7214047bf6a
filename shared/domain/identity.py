"""The resident ID number (公民身份号码, GB 11643-1999).

18 characters: a 6-digit region code, the birth date as YYYYMMDD, a 3-digit sequence, and a check
character (0-9 or X) computed with ISO 7064 MOD 11-2. It is personal data: it never appears whole
in a log line; :func:`mask` and :func:`mask_in_text` are what logs and listings use.
"""

from __future__ import annotations

import re
from operator import mul
from dataclasses import dataclass
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_CODE_OFFSET = 48 * sum(_WEIGHTS)  # ord("0") times each weight
_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")  # ASCII digits only: no full-width look-alikes
# Anything that looks like an ID number inside free text: 17 digits and a digit or X, wherever it
# stands, also inside a longer run of digits (masking a bank card number too is harmless; leaking
# an ID number is not).
_IN_TEXT = re.compile(r"([0-9]{6})[0-9]{8}([0-9]{3}[0-9Xx])")


class ResidentIdError(ValueError):
    """A resident ID number that is malformed; ``code`` is the reason code recorded for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_character(first17: str) -> str:
    """The MOD 11-2 check character for the first 17 digits (ASCII digits only)."""
    if len(first17) != 17 or not (first17.isascii() and first17.isdigit()):
        raise ValueError("the check character is computed over 17 ASCII digits")
    # Over the ASCII codes: each digit's code is its value + 48, so the weighted sum of the codes
    # exceeds the weighted sum of the digits by 48 * sum(weights). Summed in C, with no per-digit
    # int(): this runs for every member of every registration.
    total = sum(map(mul, first17.encode("ascii"), _WEIGHTS)) - _CODE_OFFSET
    return _CHECK[total % 11]


@dataclass(frozen=True, slots=True)
class ResidentId:
    number: str

    @property
    def birth_date(self) -> date:
        return _birth_date(self.number)

    @property
    def masked(self) -> str:
        return mask(self.number)

    def __str__(self) -> str:  # a ResidentId printed by accident is still masked
        return self.masked

    __repr__ = __str__


def parse_resident_id(text: str) -> ResidentId:
    """Validate shape, birth date and check character; a lower-case ``x`` is read as ``X``."""
    return ResidentId(_checked(text)[0])


def resident_id_birth_date(text: str) -> date:
    """The birth date in a valid resident ID number; :class:`ResidentIdError` as
    :func:`parse_resident_id` raises it for one that is not valid."""
    return _checked(text)[1]


def _checked(text: str) -> tuple[str, date]:
    number = text.strip().upper()
    if not _SHAPE.match(number):
        raise ResidentIdError("id_malformed", "a resident ID number is 17 digits and a check character 0-9 or X")
    try:
        birth = _birth_date(number)
    except ValueError as exc:
        raise ResidentIdError("id_bad_birth_date", f"the birth date in the ID number is not a date: {exc}") from exc
    if number[17] != check_character(number[:17]):
        raise ResidentIdError("id_bad_check_character", "the check character of the ID number is wrong")
    return number, birth


def _birth_date(number: str) -> date:
    return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


def mask(number: str) -> str:
    """Keep the first 4 and last 4 characters: ``3504**********123X``; anything short is fully masked."""
    if len(number) < 12:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_in_text(text: str) -> str:
    """Mask every ID-number-shaped run of characters inside ``text``."""
    return _IN_TEXT.sub(lambda m: m.group(1)[:4] + "*" * 10 + m.group(2), text)


def make_resident_id(region: str, birth: date, sequence: int) -> str:
    """Build a valid ID number (for test data and simulations): region code, birth date,
    a 3-digit sequence (odd for men, even for women) and its check character."""
    if len(region) != 6 or not region.isdigit() or not 0 <= sequence <= 999:
        raise ValueError("region is 6 digits and sequence 0-999")
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)
