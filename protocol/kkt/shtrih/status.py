"""Shtrih-M mode, submode and flag decoding (specs §1.4, 10h/11h tables)."""

from __future__ import annotations

from enum import IntEnum, IntFlag

from protocol.kkt.errors import EncodeError
from protocol.kkt.vocabulary import ShiftStatus


class Mode(IntEnum):
    """Low nibble of the mode byte; only the values monitoring acts on are named."""

    WORKING = 0
    DATA_OUTPUT = 1
    SHIFT_OPEN = 2
    SHIFT_EXPIRED = 3
    SHIFT_CLOSED = 4
    OPEN_DOCUMENT = 8
    PRINTING_EKLZ_REPORT = 12


class Submode(IntEnum):
    IDLE = 0
    PASSIVE_PAPER_OUT = 1
    ACTIVE_PAPER_OUT = 2
    AFTER_PAPER_OUT = 3
    PRINTING_REPORT = 4
    PRINTING = 5


PAPER_OUT_SUBMODES = frozenset((Submode.PASSIVE_PAPER_OUT, Submode.ACTIVE_PAPER_OUT, Submode.AFTER_PAPER_OUT))


class KktFlag(IntFlag):
    """KKT flags (2 bytes LE) of 10h/11h; meanings vary by model, these are the common ones."""

    JOURNAL_ROLL = 1 << 0
    RECEIPT_ROLL = 1 << 1
    DECIMAL_POINT = 1 << 4
    JOURNAL_OPTICAL = 1 << 6
    RECEIPT_OPTICAL = 1 << 7
    JOURNAL_LEVER = 1 << 8
    RECEIPT_LEVER = 1 << 9
    COVER_OPEN = 1 << 10
    DRAWER_OPEN = 1 << 11


def split_mode(mode_byte: int) -> tuple[int, int]:
    """(mode number, mode status): low and high nibble."""
    return mode_byte & 0x0F, mode_byte >> 4


def join_mode(mode: int, status: int = 0) -> int:
    if not (0 <= mode <= 15 and 0 <= status <= 15):
        raise EncodeError(f"mode {mode} / status {status} must each fit a nibble")
    return status << 4 | mode


_SHIFT_BY_MODE: dict[int, ShiftStatus] = {
    Mode.SHIFT_OPEN: ShiftStatus.OPEN,
    Mode.SHIFT_EXPIRED: ShiftStatus.EXPIRED,
    Mode.SHIFT_CLOSED: ShiftStatus.CLOSED,
}


def shift_status_from_mode(mode: int) -> ShiftStatus:
    """Modes 2/3/4 state the shift directly; other modes (e.g. 8 open document) hide it."""
    return _SHIFT_BY_MODE.get(mode, ShiftStatus.UNKNOWN)


def paper_present(flags: int, submode: int) -> bool:
    """Paper-out is submode 1/2/3 or a cleared receipt-roll (bit 1) or receipt-optical (bit 7) flag."""
    if submode in PAPER_OUT_SUBMODES:
        return False
    return bool(flags & KktFlag.RECEIPT_ROLL) and bool(flags & KktFlag.RECEIPT_OPTICAL)


def cover_open(flags: int) -> bool:
    return bool(flags & KktFlag.COVER_OPEN)
