"""The ФН's fiscalisation (registration) result: ФН 43h, Shtrih FF09h.

Layout after the error byte (specs/kkt-protocols.md §6a; the ФН's 43h answer, vendor's Java
driver FSReadFiscalization): date-time(5) INN(12, ASCII) RNM(20, ASCII) tax systems(1)
work mode(1) FD number(4 LE) fiscal sign(4 LE). Newer ФН firmware appends more bytes, which are
ignored. Work mode bit 1 is autonomous mode: the register does not exchange with an OFD at all
(FFD tag 1002 "признак автономного режима").

ATOL has no pass-through for 43h in the sources read; it reads the same fact as tag 1002 of the
registration data (A4 44, see ``AUTONOMOUS_MODE_TAG``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from enum import IntFlag

from protocol.kkt.errors import DecodeError
from protocol.kkt.fn import decode_ascii, decode_datetime5, encode_ascii, encode_datetime5

AUTONOMOUS_MODE_TAG = 1002  # registration parameter: 1 byte, non-zero = autonomous mode
_INN_LENGTH = 12
_RNM_LENGTH = 20


class WorkMode(IntFlag):
    """Registration work-mode byte (FFD tag 1062 bits as the ФН reports them in 43h)."""

    ENCRYPTION = 0x01
    AUTONOMOUS = 0x02
    AUTOMATIC = 0x04
    SERVICES = 0x08
    BSO = 0x10
    INTERNET = 0x20


@dataclass(frozen=True, slots=True)
class FnFiscalisation:
    registered_at: datetime | None
    inn: str
    rnm: str
    tax_systems: int
    work_mode: WorkMode
    fd_number: int
    fiscal_sign: int

    SIZE = 5 + _INN_LENGTH + _RNM_LENGTH + 1 + 1 + 4 + 4

    @property
    def autonomous(self) -> bool:
        return bool(self.work_mode & WorkMode.AUTONOMOUS)

    @classmethod
    def decode(cls, data: bytes) -> FnFiscalisation:
        if len(data) < cls.SIZE:
            raise DecodeError(f"fiscalisation result: need at least {cls.SIZE} bytes, got {len(data)}")
        at = 5
        inn = decode_ascii(data[at : at + _INN_LENGTH])
        at += _INN_LENGTH
        rnm = decode_ascii(data[at : at + _RNM_LENGTH])
        at += _RNM_LENGTH
        tax, mode = data[at], data[at + 1]
        fd_number, fiscal_sign = struct.unpack_from("<II", data, at + 2)
        return cls(decode_datetime5(data[:5]), inn, rnm, tax, WorkMode(mode), fd_number, fiscal_sign)

    def encode(self) -> bytes:
        return (
            encode_datetime5(self.registered_at)
            + encode_ascii(self.inn, _INN_LENGTH)
            + encode_ascii(self.rnm, _RNM_LENGTH)
            + bytes((self.tax_systems, int(self.work_mode)))
            + struct.pack("<II", self.fd_number, self.fiscal_sign)
        )
