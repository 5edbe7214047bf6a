"""Money in integer fen (分). Yuan appear only at the edges: parsing input and formatting output.

Never a float: amounts are ``int`` fen, ratios are ``Decimal``, and a computed amount is rounded
to the fen half up (四舍五入) once, at the end of its computation.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

FEN_PER_YUAN = 100


class MoneyError(ValueError):
    """An amount that cannot be read as yuan, or an impossible split."""


def yuan(fen: int) -> str:
    """Format fen as yuan with two decimals: ``yuan(6666667) == '66666.67'``."""
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise MoneyError(f"amounts are integer fen, got {type(fen).__name__}")
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{part:02d}"


def yuan_grouped(fen: int) -> str:
    """Yuan with thousands separators, as printed in reports: ``'1,877,900.00'``."""
    text = yuan(fen)
    sign = "-" if text.startswith("-") else ""
    whole, _, part = text.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}.{part}"


def to_decimal_yuan(fen: int) -> Decimal:
    return Decimal(fen) / FEN_PER_YUAN


def parse_yuan(text: str | int | Decimal) -> int:
    """Read an amount in yuan (``'66,666.67'``, ``'100'``, ``Decimal('0.5')``) as fen.

    More than two decimals is an error rather than a silent rounding: input amounts are exact.
    """
    if isinstance(text, float):
        raise MoneyError("amounts are never floats; pass a string or Decimal")
    try:
        value = Decimal(str(text).replace(",", "").strip())
    except InvalidOperation as exc:
        raise MoneyError(f"not an amount in yuan: {text!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"not an amount in yuan: {text!r}")
    fen = value * FEN_PER_YUAN
    if fen != fen.to_integral_value():
        raise MoneyError(f"more precise than one fen: {text!r}")
    return int(fen)


def round_fen(amount: Decimal) -> int:
    """Round an amount in fen to a whole fen, half up (四舍五入)."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def apply_ratio(fen: int, ratio: Decimal | str) -> int:
    """``fen * ratio`` rounded half up once; ratios such as a disability grade or a payment ratio."""
    if isinstance(ratio, float):
        raise MoneyError("ratios are never floats; pass a string or Decimal such as '0.8'")
    return round_fen(Decimal(fen) * Decimal(ratio))


def split_equally(total_fen: int, parts: int) -> list[int]:
    """Split ``total_fen`` into ``parts`` shares that differ by at most one fen and add up exactly.

    The leftover fen go to the first shares, in the order given: 20,000,000 fen among three
    members is ``[6666667, 6666667, 6666666]``. Callers pass members in their documented order.
    """
    if parts <= 0:
        raise MoneyError("cannot split among no one")
    if total_fen < 0:
        raise MoneyError("cannot split a negative amount")
    base, leftover = divmod(total_fen, parts)
    return [base + 1 if i < leftover else base for i in range(parts)]
