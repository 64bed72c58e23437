"""Checksums of Russian taxpayer and insurance numbers.

ИНН (ФНС): 10 digits for an organisation, 12 for a person or sole trader. Each control digit
is the weighted sum of the preceding digits mod 11, then mod 10 (so a remainder of 10 gives 0).
СНИЛС: 9 digits + 2-digit control = weighted sum with weights 9..1; a sum of 100 or 101 gives
00, above 101 the sum is taken mod 101 first (and 100 again gives 00). Numbers up to
001-001-998 were issued before the checksum existed and are accepted without it.
"""

from __future__ import annotations

_INN10_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS_11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS_12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_SNILS_LAST_UNCHECKED = 1001998


class InvalidNumber(ValueError):
    """An ИНН or СНИЛС with the wrong length, non-digits or a failing control sum."""


def _digits(value: str, what: str, lengths: tuple[int, ...]) -> list[int]:
    if not value.isascii() or not value.isdigit() or len(value) not in lengths:
        expected = " or ".join(str(n) for n in lengths)
        raise InvalidNumber(f"{what} must be {expected} digits, got {value!r}")
    return [int(c) for c in value]


def _control(digits: list[int], weights: tuple[int, ...]) -> int:
    return sum(d * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def check_inn(value: str, *, person: bool | None = None) -> str:
    """Return the normalised ИНН (spaces stripped) or raise ``InvalidNumber``.

    ``person``: True accepts only 12 digits, False only 10, None either.
    """
    value = value.strip()
    lengths = {None: (10, 12), True: (12,), False: (10,)}[person]
    digits = _digits(value, "ИНН", lengths)
    if len(digits) == 10:
        ok = _control(digits, _INN10_WEIGHTS) == digits[9]
    else:
        ok = (
            _control(digits, _INN12_WEIGHTS_11) == digits[10]
            and _control(digits, _INN12_WEIGHTS_12) == digits[11]
        )
    if not ok:
        raise InvalidNumber(f"ИНН {value} has a wrong control digit (mistyped?)")
    return value


def check_snils(value: str) -> str:
    """Return the СНИЛС as 11 digits (dashes and spaces removed) or raise ``InvalidNumber``."""
    compact = value.replace("-", "").replace(" ", "")
    digits = _digits(compact, "СНИЛС", (11,))
    number = int(compact[:9])
    if number <= _SNILS_LAST_UNCHECKED:
        return compact
    total = sum(d * w for d, w in zip(digits[:9], range(9, 0, -1), strict=True))
    if total > 101:
        total %= 101
    control = 0 if total in (100, 101) else total
    if control != int(compact[9:]):
        raise InvalidNumber(f"СНИЛС {value} has a wrong control number (mistyped?)")
    return compact


def is_valid_inn(value: str) -> bool:
    try:
        check_inn(value)
    except InvalidNumber:
        return False
    return True
