"""Shtrih mode/submode/flag decoding (specs §1.4)."""

from __future__ import annotations

import pytest

from protocol.kkt.shtrih.status import (
    KktFlag,
    cover_open,
    join_mode,
    paper_present,
    shift_status_from_mode,
    split_mode,
)
from protocol.kkt.state import ShiftStatus

PAPER = KktFlag.RECEIPT_ROLL | KktFlag.RECEIPT_OPTICAL


@pytest.mark.parametrize(
    ("mode", "status"),
    [
        (2, ShiftStatus.OPEN),
        (3, ShiftStatus.EXPIRED),
        (4, ShiftStatus.CLOSED),
        (8, ShiftStatus.UNKNOWN),
        (12, ShiftStatus.UNKNOWN),
    ],
)
def test_shift_status_from_mode(mode: int, status: ShiftStatus) -> None:
    assert shift_status_from_mode(mode) is status


def test_mode_nibbles() -> None:
    assert split_mode(0x28) == (8, 2)
    assert join_mode(8, 2) == 0x28


@pytest.mark.parametrize(
    ("flags", "submode", "present"),
    [
        (PAPER, 0, True),
        (PAPER, 1, False),
        (PAPER, 2, False),
        (PAPER, 3, False),
        (PAPER, 5, True),
        (KktFlag.RECEIPT_ROLL, 0, False),
        (KktFlag.RECEIPT_OPTICAL, 0, False),
    ],
)
def test_paper_out_is_submode_1_2_3_or_a_cleared_receipt_flag(
    flags: int, submode: int, present: bool
) -> None:
    assert paper_present(flags, submode) is present


def test_cover_is_flag_bit_10() -> None:
    assert cover_open(1 << 10) and not cover_open(PAPER)
